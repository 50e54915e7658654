# Teilhabe: two commands for a new user (make demo, make test); everything installs itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint typecheck unit integration bench bench-import bench-scale bench-batches bench-stages soak faults clean prometheus

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	TEILHABE_WINDOW_S=$${TEILHABE_WINDOW_S:-60} TEILHABE_GRACE_S=$${TEILHABE_GRACE_S:-10} \
	TEILHABE_IDLE_CLOSE_S=$${TEILHABE_IDLE_CLOSE_S:-5} $(BIN)/teilhabe demo

# Debian's packages for the ops tests: prometheus (the server, promtool), prometheus-alertmanager
# (the server, amtool), caddy (the webhook proxy's config check) and chromium (opens, screenshots
# and prints `teilhabe report` offline). Tests skip without them.
OPS_PACKAGES := prometheus:promtool prometheus-alertmanager:amtool caddy:caddy chromium:chromium
prometheus:
	@missing=""; for p in $(OPS_PACKAGES); do \
	  command -v $${p#*:} >/dev/null 2>&1 || missing="$$missing $${p%%:*}"; done; \
	[ -z "$$missing" ] || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	  || echo "warning: could not install$$missing (their tests will skip)"; }

lint: $(STAMP)
	$(BIN)/ruff check pipeline agents schemas tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two pytest workers (pytest-xdist): the integration and fault tests spend most of their time
# waiting on real processes; a module stays on one worker (its module fixtures run once).
test: $(STAMP) prometheus lint
	$(BIN)/pytest -q -n 2 --dist loadscope --no-loadscope-reorder

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

# Is teilhabe import streaming? Peak RSS and events/s of the read phase at 1x and 4x the size.
# CPU time per event of each stage of a worker, in one process (no Kafka, no ClickHouse).
bench-stages: $(STAMP)
	$(BIN)/python bench/stages.py

# The embedded broker's one-record-per-batch setting (dev only): envelopes vs single events.
bench-batches: $(STAMP)
	$(BIN)/python bench/record_batches.py

bench-import: $(STAMP)
	$(BIN)/python bench/import_memory.py

# Real size: backfills of 1M and 5M generated events (100k people) side by side: events/s and
# peak RSS per process; the worker's must not grow with the history. ~15 min, ~6 GB of disk.
# Other sizes: make bench-scale BENCH_SCALE_SIZES=200000,1000000 BENCH_SCALE_PEOPLE=20000
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

# Opt-in soak: 30 min at half the measured maximum rate, kill -9 every 5 min, oracle at the end.
# Shorter: make soak SOAK_MINUTES=10 SOAK_KILL_EVERY_S=120
soak: $(STAMP)
	$(BIN)/python bench/soak.py

# The fault suite alone (it is part of make test too); full forms (docs/reliability.md):
# make faults TEILHABE_FAULTS_OUTAGE_S=60 TEILHABE_FAULTS_STALL_S=30
faults: $(STAMP)
	$(BIN)/pytest -q -s tests/faults

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
