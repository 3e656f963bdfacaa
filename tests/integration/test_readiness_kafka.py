"""Liveness and readiness of a starting worker on the real broker.

``/health`` (liveness) answers 200 whenever the process answers at all; ``/ready`` answers 503 until the
catalog is loaded, the worker's partitions are assigned and no person state is being restored, then
200 with its partitions.  The catalog is big enough (a thousand MovieLens items, no vector cache) for
the worker to answer HTTP for a while before it is loaded, and the test polls from the process start.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import yaml
from kafka_helpers import REPO, WorkerProcess, run
from recovery_helpers import MOVIELENS, publish_catalog

from fusionrec.dataset import read_items
from stream.topics import ensure_topics

N_ITEMS = 1000
PARTITIONS = 3


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    """(status, JSON body); (0, {}) while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, dict(orjson.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(orjson.loads(exc.read() or b"{}"))
    except OSError:
        return 0, {}


def health_checks() -> dict[str, list[str]]:
    """The Dockerfile's HEALTHCHECK and the compose worker's healthcheck, as commands to run here."""
    (line,) = re.findall(r"^HEALTHCHECK .* CMD (.*)$", (REPO / "Dockerfile").read_text(), re.M)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    checks = {"Dockerfile": shlex.split(line), "docker-compose.yml": compose["services"]["worker"]["healthcheck"]["test"][1:]}
    for cmd in checks.values():
        assert cmd[0] == "python"
        cmd[0] = sys.executable
    return checks


def run_checks(port: int) -> dict[str, int]:
    """Exit status of each health check against the worker on ``port`` (0 = healthy)."""
    env = {**os.environ, "FUSIONREC_WEB_PORT": str(port)}
    return {name: subprocess.run(cmd, env=env, capture_output=True, timeout=30).returncode for name, cmd in health_checks().items()}


def test_ready_is_503_until_the_catalog_is_loaded_and_health_is_200_throughout(bootstrap: str, artifacts_dir: Path) -> None:
    items = list(itertools.islice(read_items(MOVIELENS), N_ITEMS))
    worker = WorkerProcess(
        bootstrap,
        ("movies",),
        extra_env={"FUSIONREC_PARTITIONS": str(PARTITIONS), "FUSIONREC_VECTOR_CACHE_DIR": ""},  # every item encoded at start
    )
    cfg = worker.config()
    run(ensure_topics(cfg))
    publish_catalog(cfg, bootstrap, items)

    samples: list[tuple[int, dict[str, object], int, dict[str, object]]] = []  # (/health, body, /ready, body)
    checks_loading: dict[str, int] = {}
    worker.start(artifacts_dir)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
            assert time.monotonic() < deadline, f"never ready; last sample {samples[-1:]}\n{worker.log_tail()}"
            ready, ready_body = get(worker.port, "/ready")
            health, health_body = get(worker.port, "/health")
            samples.append((health, health_body, ready, ready_body))
            if ready == 200:
                break
            if ready == 503 and ready_body.get("catalog_ready") is False and not checks_loading:
                checks_loading = run_checks(worker.port)  # the container checks, while the catalog loads...
                if get(worker.port, "/ready")[0] != 503:
                    checks_loading = {}  # ...if it still was when they finished
            time.sleep(0.1)
        for _ in range(5):  # and it stays so
            samples.append((*get(worker.port, "/health"), *get(worker.port, "/ready")))
        checks_ready = run_checks(worker.port)
        # a clean stop (SIGTERM: docker stop, a rolling deploy) is not a crash
        assert worker.proc is not None
        worker.proc.terminate()
        stopped_rc = worker.proc.wait(timeout=60)
    finally:
        worker.stop()
    log = worker.log_tail(400)
    assert stopped_rc == 0 and "Crashed" not in log, f"SIGTERM exited with {stopped_rc}:\n{worker.log_tail(30)}"

    answered = [s for s in samples if s[0] or s[2]]
    assert answered, "the worker never answered HTTP"
    assert all(health == 200 for health, _, _, _ in answered), sorted({(h, r) for h, _, r, _ in answered})
    assert {ready for _, _, ready, _ in answered} <= {200, 503}
    not_ready = [body for _, _, ready, body in answered if ready == 503]
    loading = [body for body in not_ready if body["catalog_ready"] is False]
    assert loading, f"/ready must answer 503 while the catalog loads: {[(h, r) for h, _, r, _ in answered][:10]}"
    assert all(body["ready"] is False for body in not_ready)
    assert all(int(body["items"]) < N_ITEMS for body in loading)  # type: ignore[call-overload]

    first_ready = next(n for n, s in enumerate(answered) if s[2] == 200)
    assert all(s[2] == 200 for s in answered[first_ready:]), "ready stays ready"
    body = answered[-1][3]
    assert body["ready"] is True and body["catalog_ready"] is True and body["restoring"] is False
    assert body["items"] == N_ITEMS
    k = cfg.kafka
    assert set(body["partitions"]) == {f"{t}:{p}" for t in (k.events_topic("movies"), k.by_person_topic) for p in range(PARTITIONS)}  # type: ignore[arg-type]
    assert answered[-1][1]["ready"] is True  # /health reports the same, with 200 all along
    # the Dockerfile's and compose's health checks follow readiness
    assert checks_loading and all(rc != 0 for rc in checks_loading.values()), checks_loading
    assert checks_ready == {"Dockerfile": 0, "docker-compose.yml": 0}, checks_ready
    print(f"\n{len(not_ready)} samples answered 503 ({len(loading)} while the catalog loaded), then 200")
