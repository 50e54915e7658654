"""Canaries for the patched Faust/mode/aiokafka internals listed in ``agents.faust_patches``.

One canary per entry fails when the upstream code under a patch changes; the pins in
pyproject.toml must equal the installed versions; and no override of a Faust/mode class, nor
any upstream private the agents touch, may be missing from the registry.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import pkgutil
import re
import textwrap
import tokenize
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from mode.utils.queues import FlowControlEvent

import agents
from agents.faust_patches import (
    PATCHES,
    PINNED,
    Patch,
    check,
    fingerprint,
    fingerprint_of,
    normalise,
    resolve,
)

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ("faust", "mode", "aiokafka")
#: Names every class has or that Python sets itself: not overrides.
CLASS_MACHINERY = {
    "__module__",
    "__qualname__",
    "__doc__",
    "__dict__",
    "__weakref__",
    "__annotations__",
    "__firstlineno__",
    "__static_attributes__",
    "__abstractmethods__",
    "__parameters__",
    "__orig_bases__",
    "_abc_impl",
    "logger",  # mode's ServiceBase.__init_subclass__ gives every service class its logger
}


def by_name(name: str) -> Patch:
    return next(p for p in PATCHES if p.name == name)


def is_upstream(cls: type) -> bool:
    return cls.__module__.split(".")[0] in UPSTREAM


def our_upstream_subclasses() -> list[type]:
    """Classes defined in ``agents`` that derive from a Faust, mode or aiokafka class."""
    found = []
    for info in pkgutil.iter_modules(agents.__path__):
        module = importlib.import_module(f"agents.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and any(map(is_upstream, cls.__mro__[1:])):
                found.append(cls)
    return found


def registered_ours() -> set[str]:
    return {path for p in PATCHES for path in p.ours}


def upstream_identifiers(cls: type) -> set[str]:
    """Every identifier in the source of the upstream classes ``cls`` derives from."""
    names: set[str] = set()
    for base in filter(is_upstream, cls.__mro__[1:]):
        try:
            source = textwrap.dedent(inspect.getsource(base))
        except (OSError, TypeError):
            continue
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        names.update(t.string for t in tokens if t.type == tokenize.NAME)
    return names


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_canary_upstream_code_under_the_patch_is_unchanged(patch: Patch) -> None:
    problem = check(patch)
    assert problem is None, problem


def test_a_canary_fails_when_the_patched_upstream_code_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Upstream fixing resume (no clearing unless suspended) trips the flow control canary."""
    patch = by_name("flow-control-resume")
    assert check(patch) is None

    def resume(self: FlowControlEvent) -> None:
        was_suspended = self._suspend.is_set()
        self._suspend.clear()
        self._resume.set()
        if was_suspended:
            self.clear()

    monkeypatch.setattr(FlowControlEvent, "resume", resume)
    problem = check(patch)
    assert problem is not None
    assert "flow-control-resume" in problem and patch.recheck in problem
    assert "agents.consumer.KeepQueuesFlowControl.resume" in problem


def test_the_fingerprint_ignores_layout_and_comments_but_not_code() -> None:
    patch = by_name("consumer-getmany")
    (path,) = patch.sources
    source = inspect.getsource(resolve(path))
    assert fingerprint_of({path: source}) == patch.fingerprint
    relaid = "\n".join(line + "  # note" if line.strip() else "" for line in source.splitlines())
    assert fingerprint_of({path: relaid}) == patch.fingerprint
    changed = source.replace("if not self.flow_active:\n", "if not self.flow_active and 0:\n", 1)
    assert changed != source
    assert fingerprint_of({path: changed}) != patch.fingerprint
    assert normalise("a = (1,\n   2)  # c\n") == "a = ( 1 , 2 )"


def test_registry_entries_are_complete_and_resolve() -> None:
    names = [p.name for p in PATCHES]
    assert len(names) == len(set(names))
    kinds = {"override", "install", "relies-on", "avoids"}
    for p in PATCHES:
        assert p.kind in kinds, p.name
        assert p.why and p.recheck and p.ours and p.sources, p.name
        assert p.upstream_issue.startswith(
            ("https://github.com/faust-streaming/", "no upstream issue filed")
        ), p.name
        assert re.fullmatch(r"[0-9a-f]{16}", p.fingerprint), p.name
        for path in p.ours:
            assert path.startswith("agents."), path
            resolve(path)  # raises when our code was renamed
        module, _, attr = p.target.rpartition(".")
        assert p.target.split(".")[0] in UPSTREAM, p.name
        owner = resolve(module)
        assert re.search(rf"\b{attr}\b", inspect.getsource(owner)), p.target
        for name in p.privates:
            assert name.startswith("_"), name
    assert fingerprint(by_name("app-on-stop").sources) == by_name("app-on-stop").fingerprint


def test_installed_versions_equal_the_exact_pins_in_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dist in PINNED:
        (spec,) = [d for d in deps if re.match(rf"{re.escape(dist)}\s*[=<>!~]", d)]
        pinned = re.fullmatch(rf"{re.escape(dist)}==([\w.]+)", spec.replace(" ", ""))
        assert pinned, f"{dist} must be pinned exactly (==) while its internals are patched"
        assert version(dist) == pinned.group(1), (
            f"{dist} {version(dist)} installed, {pinned.group(1)} pinned: "
            "run the canaries against the pinned version"
        )


def test_every_override_in_our_subclasses_is_registered() -> None:
    classes = our_upstream_subclasses()
    names = {c.__name__ for c in classes}
    assert {"NoDropConsumer", "KeepQueuesFlowControl", "DirectoryTable", "TeilhabeApp"} <= names
    ours = registered_ours()
    missing = []
    for cls in classes:
        qual = f"{cls.__module__}.{cls.__qualname__}"
        for name in set(vars(cls)) - CLASS_MACHINERY:
            upstream = [b for b in cls.__mro__[1:] if is_upstream(b) and name in vars(b)]
            if upstream and f"{qual}.{name}" not in ours:
                missing.append(f"{qual}.{name} overrides {upstream[0].__module__}")
    assert not missing, f"register these in agents/faust_patches.py: {missing}"


def test_every_attribute_our_subclasses_set_on_self_is_ours_or_registered() -> None:
    """``self.x = ...`` in a subclass method must not silently replace an upstream attribute
    (``NoDropConsumer.__init__`` replaces ``callback``: registered)."""
    ours = registered_ours()
    missing = []
    for cls in our_upstream_subclasses():
        qual = f"{cls.__module__}.{cls.__qualname__}"
        theirs = upstream_identifiers(cls)
        for name, member in vars(cls).items():
            if not inspect.isfunction(member):
                continue
            tree = ast.parse(textwrap.dedent(inspect.getsource(member)))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                    and node.attr in theirs
                    and f"{qual}.{name}" not in ours
                ):
                    missing.append(f"{qual}.{name} sets self.{node.attr}")
    assert not missing, f"register these in agents/faust_patches.py: {missing}"


def _private_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(private names used, private names the code defines) in a module's syntax tree."""
    used: set[str] = set()
    defined: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute):
            (defined if isinstance(node.ctx, ast.Store) else used).add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            used.add(node.args[1].value)
    private = re.compile(r"_[a-z]\w*\Z")
    return {n for n in used if private.match(n)}, {n for n in defined if private.match(n)}


def test_every_upstream_private_the_agents_touch_is_registered() -> None:
    used: set[str] = set()
    defined: set[str] = set()
    for path in sorted((ROOT / "agents").glob("*.py")):
        if path.name == "faust_patches.py":
            continue
        u, d = _private_names(ast.parse(path.read_text()))
        used |= u
        defined |= d
    registered = {name for p in PATCHES for name in p.privates}
    # names the agents define themselves, except upstream privates they override
    unregistered = sorted(used - (defined - registered) - registered)
    assert not unregistered, (
        f"private names used in agents/ but neither defined there nor listed in "
        f"agents/faust_patches.py: {unregistered}"
    )


def test_the_private_scan_sees_a_new_private(tmp_path: Any) -> None:
    """The scan above can fail: a new upstream private in agent code is reported."""
    source = "def f(app):\n    return app._new_internal, getattr(app, '_other')\n"
    used, defined = _private_names(ast.parse(source))
    assert used == {"_new_internal", "_other"} and not defined
