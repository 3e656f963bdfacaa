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
	@# --no-cache-dir: torch's CUDA wheels are GBs; a second copy in the cache once filled a CI disk
	$(PY) -m pip install -q --no-cache-dir -c constraints.txt -e '.[test]'
	$(PY) -c "from stream.kafka_local.broker import fetch_jars; print('kafka jars:', fetch_jars())"
	touch $@

install: $(VENV)/.installed

# 40,000 MovieLens events offered open loop at 2,000/s (after 2,000 warm-up events); latency = receipt of
# the recommendation - the event's scheduled send time, so a worker that falls behind shows it in full
demo: install
	$(VENV)/bin/fusionrec demo --dataset data/movielens-small --rate 2000 --limit 40000

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
