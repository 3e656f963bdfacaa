"""Operations on the real broker: consumer lag while a worker is paused, a real Prometheus scraping the
worker and the dashboard process, and the dashboard page in headless Chromium (screenshot kept).

The worker runs as a subprocess; "paused" is SIGSTOP (the process can neither consume nor answer
HTTP), so the lag is read from the separate ``fusionrec dashboard`` process, which reads the group's
committed offsets and the end offsets from the broker itself.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import two_platforms as world
from kafka_helpers import REPO, WorkerProcess, produce, run

from fusionrec.contracts import encode, identity_key
from stream.kafka_local.broker import free_port
from stream.topics import ensure_topics

PROMETHEUS = Path("/usr/bin/prometheus")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LAG_LINE = re.compile(r'^fusionrec_consumer_lag_messages\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


def need_binary(path: Path) -> None:
    """Skip on a developer machine without it; in CI (scripts/install-test-deps.sh ran) it must be there."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: run scripts/install-test-deps.sh")
        pytest.skip(f"{path} is missing (scripts/install-test-deps.sh installs it)")


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 60.0, every_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def http_get(url: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return resp.read()


def lag_of(metrics_text: str, group: str) -> dict[tuple[str, int], float]:
    out = {}
    for m in LAG_LINE.finditer(metrics_text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
        if labels.get("group") == group:
            out[(labels["topic"], int(labels["partition"]))] = float(m.group("value"))
    return out


class DashboardProcess:
    """``fusionrec dashboard`` for one worker's group, as a subprocess."""

    def __init__(self, worker: WorkerProcess, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"dashboard-{worker.run_id}.log"
        env = {**os.environ, **worker.env, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "stream.cli", "dashboard", "--port", str(self.port), "--interval", "1",
               "--targets", f"http://127.0.0.1:{worker.port}/metrics"]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        return http_get(f"{self.url}/metrics").decode()

    def api(self) -> dict[str, Any]:
        return dict(json.loads(http_get(f"{self.url}/api/dashboard")))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def ops_worker(bootstrap: str, artifacts_dir: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(bootstrap, world.PLATFORMS, extra_env={"FUSIONREC_CATALOG_WAIT_S": "1", "FUSIONREC_PARTITIONS": "3"})
    cfg = w.config()
    run(ensure_topics(cfg))
    catalog = [(cfg.kafka.items_topic, i.item_id.encode(), encode(i)) for i in world.items()]
    catalog += [(cfg.kafka.identity_topic, identity_key(link.platform, link.user_id), encode(link)) for link in world.links()]
    run(produce(bootstrap, catalog))
    w.start(artifacts_dir)
    try:
        w.wait_ready(items=len(world.items()))
        yield w
    finally:
        if w.proc is not None and w.proc.poll() is None:
            os.kill(w.proc.pid, signal.SIGCONT)  # never leave it stopped
        w.stop()


@pytest.fixture(scope="module")
def dashboard(ops_worker: WorkerProcess, artifacts_dir: Path) -> Iterator[DashboardProcess]:
    d = DashboardProcess(ops_worker, artifacts_dir)
    try:
        wait_for("the dashboard process", lambda: _ok(lambda: d.api()["t"]), timeout_s=60)
        yield d
    finally:
        d.stop()


def _ok(f: Callable[[], Any]) -> Any:
    try:
        return f()
    except (OSError, ValueError, KeyError):
        return None


def write_dataset(folder: Path, n: int, *, users: int = 24, t0: float | None = None) -> Path:
    """A dataset folder (format of data/README.md) of ``n`` valid events of many users on both platforms."""
    folder.mkdir(parents=True)
    t0 = time.time() - 3600 if t0 is None else t0
    by_platform: dict[str, list[str]] = {}
    for item in world.items():
        by_platform.setdefault(item.platform, []).append(item.item_id)
    lines = ["ts\tuser_id\tplatform\titem_id\tevent_type\tvalue\trole"]
    for i in range(n):
        platform = world.PLATFORMS[i % 2]
        items = by_platform[platform]
        lines.append(f"{t0 + i * 0.01:.2f}\tops-u{i % users}\t{platform}\t{items[(i * 7 + i // users) % len(items)]}\tclick\t\thistory")
    with gzip.open(folder / "events.tsv.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return folder


class Replay:
    """``fusionrec replay --skip-items --rate R`` of a dataset folder, in the background."""

    def __init__(self, worker: WorkerProcess, folder: Path, rate: float) -> None:
        env = {**os.environ, **worker.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "replay", "--dataset", str(folder), "--rate", str(rate), "--skip-items"],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)

    def finish(self, timeout_s: float = 120) -> str:
        out, _ = self.proc.communicate(timeout=timeout_s)
        assert self.proc.returncode == 0, out.decode()
        return out.decode()


def all_caught_up(d: DashboardProcess, group: str) -> dict[tuple[str, int], float] | None:
    lag = _ok(lambda: lag_of(d.metrics(), group))
    return lag if lag and all(v == 0 for v in lag.values()) else None


def test_lag_rises_for_the_right_partitions_while_the_worker_is_paused(
    ops_worker: WorkerProcess, dashboard: DashboardProcess, bootstrap: str
) -> None:
    cfg = ops_worker.config()
    group = cfg.worker.app_id
    events_topics = {cfg.kafka.events_topic(p) for p in cfg.platforms}
    wait_for("zero lag before the pause", lambda: all_caught_up(dashboard, group))
    assert ops_worker.proc is not None
    pid = ops_worker.proc.pid

    os.kill(pid, signal.SIGSTOP)
    try:
        now = time.time()
        users = ["u-alice", "u-bob", "watcher-7", "anon-1", "anon-2", "anon-3"]
        sent = []
        for n in range(36):
            platform = world.PLATFORMS[n % 2]
            item = next(i.item_id for i in world.items() if i.platform == platform)
            event = {"v": 1, "event_id": f"paused-{n}", "ts": now - 60 + n, "platform": platform,
                     "user_id": users[n % len(users)], "item_id": item, "event_type": "view"}  # fmt: skip
            sent.append((cfg.kafka.events_topic(platform), event["user_id"].encode(), json.dumps(event).encode()))
        metadata = run(produce(bootstrap, sent))
        want = Counter((md.topic, md.partition) for md in metadata)
        assert len(want) >= 3, "the events should land on several partitions"

        def paused_lag() -> dict[tuple[str, int], float] | None:
            lag = _ok(lambda: lag_of(dashboard.metrics(), group))
            if not lag:
                return None
            events_lag = {tp: v for tp, v in lag.items() if tp[0] in events_topics and v}
            return lag if events_lag == {tp: float(n) for tp, n in want.items()} else None

        lag = wait_for("the lag of the produced events on the dashboard's /metrics", paused_lag, timeout_s=30)
        untouched = [tp for tp in lag if tp[0] in events_topics and tp not in want]
        assert all(lag[tp] == 0 for tp in untouched)
        assert all(v == 0 for (topic, _), v in lag.items() if topic == cfg.kafka.by_person_topic), "nothing re-keyed yet"

        # the terminal view reads the same figures from the broker
        out = subprocess.run(
            [sys.executable, "-m", "stream.cli", "lag", "--json"],
            env={**os.environ, **ops_worker.env}, cwd=REPO, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        rows = json.loads(out.stdout)
        assert {(r["topic"], r["partition"]): r["lag"] for r in rows if r["lag"]} == dict(want)
        assert {r["group"] for r in rows} == {group}
        table = subprocess.run(
            [sys.executable, "-m", "stream.cli", "lag"],
            env={**os.environ, **ops_worker.env}, cwd=REPO, capture_output=True, timeout=60, check=True, text=True,
        ).stdout  # fmt: skip
        assert f"total {sum(want.values())}" in table and "PARTITION" in table
    finally:
        os.kill(pid, signal.SIGCONT)

    wait_for("zero lag after the resume (dashboard)", lambda: all_caught_up(dashboard, group), timeout_s=90)

    def worker_sees_zero() -> bool:
        lag = _ok(lambda: lag_of(ops_worker.metrics(), group))
        return bool(lag) and set(lag) >= set(want) and all(v == 0 for v in lag.values())

    wait_for("zero lag on the worker's own /metrics", worker_sees_zero, timeout_s=30)


def test_prometheus_scrapes_lag_and_latency(
    ops_worker: WorkerProcess, dashboard: DashboardProcess, tmp_path: Path, artifacts_dir: Path, bootstrap: str
) -> None:
    need_binary(PROMETHEUS)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{REPO / 'dashboards' / 'alerts.yml'}']\n"
        "scrape_configs:\n"
        f"  - {{job_name: fusionrec-worker, static_configs: [{{targets: ['127.0.0.1:{ops_worker.port}']}}]}}\n"
        f"  - {{job_name: fusionrec-dashboard, static_configs: [{{targets: ['127.0.0.1:{dashboard.port}']}}]}}\n"
    )
    log = open(artifacts_dir / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    prom = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    replay = Replay(ops_worker, write_dataset(tmp_path / f"prom-{uuid.uuid4().hex[:6]}", 600), rate=40)
    # one bad message, so that the dead-letter panels have a series to show
    cfg = ops_worker.config()
    run(produce(bootstrap, [(cfg.kafka.events_topic(world.PLATFORMS[0]), b"ops-bad", b"{not json")]))

    def query(expr: str) -> list[dict[str, Any]] | None:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = _ok(lambda: json.loads(http_get(url)))
        if not body or body.get("status") != "success":
            return None
        return list(body["data"]["result"])

    def finite(expr: str) -> list[dict[str, Any]] | None:
        result = query(expr)
        return result if result and all(math.isfinite(float(r["value"][1])) for r in result) else None

    try:
        jobs = {"fusionrec-worker", "fusionrec-dashboard"}  # both export the lag they read from the broker
        lag = wait_for(
            "the lag in Prometheus from both jobs",
            lambda: (r := finite("fusionrec_consumer_lag_messages")) and {x["metric"]["job"] for x in r} == jobs and r,
            timeout_s=60,
        )
        assert {r["metric"]["group"] for r in lag} == {ops_worker.config().worker.app_id}
        p99 = wait_for(
            "a latency p99 in Prometheus",
            lambda: finite("histogram_quantile(0.99, sum by (le) (rate(fusionrec_event_to_recommendation_ms_bucket[15s])))"),
            timeout_s=60,
        )
        assert 0 < float(p99[0]["value"][1]) < 10_000
        # every Grafana panel's query is valid PromQL on a real server and shows data (a non-empty result)
        dash = json.loads((REPO / "dashboards/grafana/dashboards/fusionrec.json").read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "15s")
                result = wait_for(f"data for the panel {panel['title']!r}: {expr}", lambda: query(expr), timeout_s=60)
                assert result, f"{panel['title']}: {expr}"
        # the alert rules shipped with the compose Prometheus evaluate without error on the real series
        def rules_evaluated() -> list[dict[str, Any]] | None:
            body = _ok(lambda: json.loads(http_get(f"http://127.0.0.1:{port}/api/v1/rules")))
            rules = [r for g in body["data"]["groups"] for r in g["rules"]] if body else []
            return rules if rules and all(r["health"] != "unknown" for r in rules) else None

        rules = wait_for("the alert rules evaluated", rules_evaluated, timeout_s=30)
        assert {r["name"]: r["health"] for r in rules if r["health"] != "ok"} == {}, [r.get("lastError") for r in rules]
        assert {r["name"] for r in rules if r["type"] == "alerting"} >= {"FusionrecConsumerLagGrowing", "FusionrecWorkerDown"}
        names = {r["metric"]["__name__"] for r in query('{__name__=~"fusionrec_.+"}') or []}
        assert {"fusionrec_events_total", "fusionrec_model_info", "fusionrec_encoder_batch_ms_count",
                "fusionrec_index_op_ms_count", "fusionrec_online_recall_at_10"} <= names  # fmt: skip
    finally:
        replay.finish()
        prom.terminate()
        prom.wait(timeout=30)
        log.close()


class Chrome:
    """Headless Chromium driven by chromedriver over the W3C WebDriver protocol (plain HTTP)."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log = open(log_dir / "chromedriver.log", "wb")  # noqa: SIM115 - closed in quit()
        self.proc = subprocess.Popen([str(CHROMEDRIVER), f"--port={self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for("chromedriver", lambda: _ok(lambda: http_get(f"{self.base}/status")), timeout_s=30)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1400,1250"]  # fmt: skip
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": str(CHROMIUM), "args": args}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())["value"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"webdriver {method} {path}: {exc.read().decode()}") from exc

    def get(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str) -> Any:
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": []})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot")))

    def quit(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            self.log.close()


CHARTS_JS = """
const c = id => { const e = document.getElementById(id); return {series: +(e.dataset.series || 0), points: +(e.dataset.points || 0), max: +(e.dataset.max || 0)}; };
return {readings: +(document.body.dataset.readings || 0), lag: c('chart-lag'), latency: c('chart-latency'),
        throughput: c('chart-throughput'), dlq: c('chart-dlq'), status: document.getElementById('status').textContent,
        model: document.getElementById('tile-model').textContent, lagRows: document.querySelectorAll('#lag-table tbody tr').length};
"""


def test_dashboard_page_in_headless_chromium(
    ops_worker: WorkerProcess, dashboard: DashboardProcess, tmp_path: Path, artifacts_dir: Path
) -> None:
    need_binary(CHROMIUM)
    need_binary(CHROMEDRIVER)
    assert ops_worker.proc is not None
    replay = Replay(ops_worker, write_dataset(tmp_path / f"page-{uuid.uuid4().hex[:6]}", 6000), rate=60)
    chrome = Chrome(artifacts_dir)
    try:
        chrome.get(f"{dashboard.url}/dashboard")
        time.sleep(6)
        os.kill(ops_worker.proc.pid, signal.SIGSTOP)  # a few seconds of backlog: the lag chart shows a hill
        try:
            time.sleep(5)
        finally:
            os.kill(ops_worker.proc.pid, signal.SIGCONT)

        def populated() -> dict[str, Any] | None:
            s = chrome.js(CHARTS_JS)
            ok = s["lag"]["series"] >= 3 and s["lag"]["points"] > 0 and s["lag"]["max"] > 0 and s["latency"]["points"] > 0
            return s if ok and s["throughput"]["max"] > 0 and s["lagRows"] >= 3 else None

        state = wait_for("lag and latency charts with data", populated, timeout_s=60, every_s=1)
        assert ops_worker.config().kafka.by_person_topic in str(chrome.js("return document.getElementById('lag-table').textContent"))
        assert state["lag"]["max"] >= 10, state  # the pause left a backlog
        # once the worker answers again the model tile names its version and the lag comes back down
        wait_for("the model version tile", lambda: chrome.js(CHARTS_JS)["model"].startswith("fusion-v2-"), timeout_s=30)
        # the backlog drains while the replay goes on (a few messages are always in flight at 60 events/s)
        tile = "return parseFloat(document.getElementById('tile-lag').textContent)"
        wait_for("the backlog drained on the page", lambda: (v := chrome.js(tile)) is not None and v < 120, timeout_s=60)
        time.sleep(6)  # and the 10 s latency window moves past the pause: the picture shows the recovery
        chrome.screenshot(artifacts_dir / "dashboard.png")
        assert (artifacts_dir / "dashboard.png").stat().st_size > 10_000

        # the worker serves the same page from its own metrics
        chrome.get(f"http://127.0.0.1:{ops_worker.port}/dashboard")
        worker_state = wait_for(
            "the worker's own dashboard page",
            lambda: (s := chrome.js(CHARTS_JS))["readings"] >= 2 and s["lag"]["series"] >= 3 and s["latency"]["points"] > 0 and s,
            timeout_s=30,
            every_s=1,
        )
        assert worker_state["model"].startswith("fusion-v2-")
        chrome.screenshot(artifacts_dir / "dashboard-worker.png")
    finally:
        chrome.quit()
        replay.stop()  # the page has been checked: the rest of the replay is not needed
