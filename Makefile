# fusionrec: two commands on a fresh clone — `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-unit test-integration kafka-start kafka-stop clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	$(PY) -c "from stream.kafka_local.broker import fetch_jars; print('kafka jars:', fetch_jars())"
	touch $@

install: $(VENV)/.installed

# 20,000 MovieLens events at 500/s: a load one worker sustains on a 2-core machine, so the latency printed
# is freshness, not queueing (drop --limit/--rate for the whole set as fast as the publisher goes)
demo: install
	$(VENV)/bin/fusionrec demo --dataset data/movielens-small --rate 500 --limit 20000

test: install
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit fusionrec

test-integration: install
	$(PY) -m pytest tests/integration

kafka-start: install
	$(VENV)/bin/fusionrec kafka start

kafka-stop: install
	$(VENV)/bin/fusionrec kafka stop

clean:
	rm -rf $(VENV) .pytest_cache
