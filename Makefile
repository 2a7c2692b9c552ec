# kdmed: `make book` installs everything into .venv and builds the book; `make test` runs the tests.
# Use GNU make. Variables: PROFILE (smoke|default|gpu|full), CHAPTERS (comma list), PARAMS
# (space-separated [CHAPTER.]NAME=VALUE), PYTHON (the interpreter that creates .venv).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kdmed-installed
PROFILE ?= default
CHAPTERS ?=
PARAMS ?=

.PHONY: venv test book book-frozen book-smoke check-html validate clean distclean

venv: $(STAMP)

# re-installs only when pyproject.toml changed; pip takes the exact pins from it
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kdmed)"
	touch $(STAMP)

# pytest exits non-zero (5) when it collects no test, and make stops on it
test: venv
	$(PY) -m pytest

book: venv
	$(PY) -m kdmed.book build --profile $(PROFILE) $(if $(CHAPTERS),--chapters $(CHAPTERS)) $(foreach p,$(PARAMS),--param $(p))
	$(PY) -m kdmed.book check-html

# render only from results/$(PROFILE): trains nothing, fails listing any missing or stale run
book-frozen: venv
	$(PY) -m kdmed.book build --frozen --profile $(PROFILE) $(if $(CHAPTERS),--chapters $(CHAPTERS)) $(foreach p,$(PARAMS),--param $(p))
	$(PY) -m kdmed.book check-html

book-smoke:
	$(MAKE) book PROFILE=smoke

check-html: venv
	$(PY) -m kdmed.book check-html

validate: venv
	$(PY) -m kdmed.book validate --profile $(PROFILE) $(foreach p,$(PARAMS),--param $(p))

clean:
	rm -rf _build .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
