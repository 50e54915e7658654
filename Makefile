# Teilhabe: two commands for a new user (make demo, make test); everything installs itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint typecheck unit integration bench soak clean prometheus

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	TEILHABE_WINDOW_S=$${TEILHABE_WINDOW_S:-60} TEILHABE_GRACE_S=$${TEILHABE_GRACE_S:-10} \
	TEILHABE_IDLE_CLOSE_S=$${TEILHABE_IDLE_CLOSE_S:-5} $(BIN)/teilhabe demo

# Debian's prometheus package: the real server and promtool for the ops tests.
prometheus:
	@command -v promtool >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	  || echo "warning: could not install Debian's prometheus package (promtool tests will skip)"; }

lint: $(STAMP)
	$(BIN)/ruff check pipeline agents schemas tests bench
	$(BIN)/mypy

test: $(STAMP) prometheus lint
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
