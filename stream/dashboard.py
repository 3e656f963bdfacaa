"""The lag dashboard: a history of metric readings and the page that charts it.

Two servers use it:

* every worker serves ``/dashboard`` from its own registry (``install_ops``);
* ``fusionrec dashboard`` is a small separate process for operators: it reads the group's lag from
  the broker itself (so the lag stays visible while workers are paused, stuck or dead), scrapes the
  workers' ``/metrics``, and serves the same page for all of them plus its own ``/metrics``.

Both keep the last minutes of readings (``History``) and answer ``/api/dashboard`` with ready-to-draw
series: lag per partition, events/s per platform, latency percentiles, dead letters per reason, and
the current model version, index size, online Recall@10 and checkpoint age.  The page
(``stream/web/``) polls that every two seconds; it needs nothing from the internet.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fusionrec.config import Config
from stream.lag import LagReader, worker_lag_topics
from stream.metrics import Metrics

log = logging.getLogger(__name__)

__all__ = ["Reading", "History", "quantile", "static_file", "DashboardServer"]

LATENCY = "fusionrec_event_to_recommendation_ms"
PERCENTILES = (0.5, 0.95, 0.99)


@dataclass
class Reading:
    """One reading of the metrics of all workers, summed (counters, histograms) or maxed (gauges)."""

    t: float
    lag: dict[tuple[str, str, str], float] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)
    recommendations: float = 0.0
    dead_letters: dict[str, float] = field(default_factory=dict)
    latency_buckets: dict[float, float] = field(default_factory=dict)
    latency_count: float = 0.0
    latency_sum: float = 0.0
    batch_count: float = 0.0
    batch_sum: float = 0.0
    encoder_ms: tuple[float, float] = (0.0, 0.0)
    index_ms: tuple[float, float] = (0.0, 0.0)
    rank_ms: tuple[float, float] = (0.0, 0.0)
    index_items: float = math.nan
    model_versions: set[str] = field(default_factory=set)
    recall: list[float] = field(default_factory=list)
    checkpoint_age_s: float = math.nan
    workers: int = 0

    @classmethod
    def parse(cls, texts: Iterable[str], t: float | None = None) -> Reading:
        r = cls(t=time.time() if t is None else t)
        for text in texts:
            r.workers += 1
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    r._add(s.name, s.labels, s.value)
        return r

    def _add(self, name: str, labels: dict[str, str], value: float) -> None:
        if name == "fusionrec_consumer_lag_messages":
            key = (labels.get("group", ""), labels.get("topic", ""), labels.get("partition", ""))
            self.lag[key] = max(self.lag.get(key, 0.0), value)
        elif name == "fusionrec_events_total":
            self.events[labels.get("platform", "")] = self.events.get(labels.get("platform", ""), 0.0) + value
        elif name == "fusionrec_recommendations_total":
            self.recommendations += value
        elif name == "fusionrec_dead_letters_total":
            self.dead_letters[labels.get("reason", "")] = self.dead_letters.get(labels.get("reason", ""), 0.0) + value
        elif name == f"{LATENCY}_bucket":
            le = float(labels["le"])
            self.latency_buckets[le] = self.latency_buckets.get(le, 0.0) + value
        elif name == f"{LATENCY}_count":
            self.latency_count += value
        elif name == f"{LATENCY}_sum":
            self.latency_sum += value
        elif name == "fusionrec_batch_size_events_count" and labels.get("stage") == "recommend":
            self.batch_count += value
        elif name == "fusionrec_batch_size_events_sum" and labels.get("stage") == "recommend":
            self.batch_sum += value
        elif name == "fusionrec_encoder_batch_ms_sum":
            self.encoder_ms = (self.encoder_ms[0] + value, self.encoder_ms[1])
        elif name == "fusionrec_encoder_batch_ms_count":
            self.encoder_ms = (self.encoder_ms[0], self.encoder_ms[1] + value)
        elif name == "fusionrec_index_op_ms_sum" and labels.get("op") == "vectors_of":
            self.index_ms = (self.index_ms[0] + value, self.index_ms[1])
        elif name == "fusionrec_index_op_ms_count" and labels.get("op") == "vectors_of":
            self.index_ms = (self.index_ms[0], self.index_ms[1] + value)
        elif name == "fusionrec_rank_batch_ms_sum":
            self.rank_ms = (self.rank_ms[0] + value, self.rank_ms[1])
        elif name == "fusionrec_rank_batch_ms_count":
            self.rank_ms = (self.rank_ms[0], self.rank_ms[1] + value)
        elif name == "fusionrec_index_items":
            self.index_items = value if math.isnan(self.index_items) else max(self.index_items, value)
        elif name == "fusionrec_model_info" and value:
            self.model_versions.add(labels.get("model_version", ""))
        elif name == "fusionrec_online_recall_at_10" and not math.isnan(value):
            self.recall.append(value)
        elif name == "fusionrec_checkpoint_age_seconds" and not math.isnan(value):
            self.checkpoint_age_s = value if math.isnan(self.checkpoint_age_s) else max(self.checkpoint_age_s, value)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile`` of cumulative buckets (le → count), as Prometheus interpolates it."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # the highest finite bucket, like Prometheus
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _rate(new: float, old: float, dt: float) -> float:
    return max(0.0, new - old) / dt if dt > 0 else 0.0


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else round(x, 3)


class History:
    """The last ``keep_s`` seconds of readings, and the series the page draws from them."""

    def __init__(self, keep_s: float = 600.0, latency_window_s: float = 10.0) -> None:
        self.keep_s = keep_s
        self.latency_window_s = latency_window_s
        self.readings: deque[Reading] = deque()

    def add(self, reading: Reading) -> None:
        self.readings.append(reading)
        while self.readings and self.readings[0].t < reading.t - self.keep_s:
            self.readings.popleft()

    def _before(self, i: int, seconds: float) -> Reading:
        """The newest reading at least ``seconds`` older than reading ``i`` (or the oldest one)."""
        target = self.readings[i].t - seconds
        j = i - 1
        while j > 0 and self.readings[j].t > target:
            j -= 1
        return self.readings[max(j, 0)]

    def series(self) -> dict[str, Any]:
        rs = list(self.readings)
        out: dict[str, Any] = {
            "t": [r.t for r in rs],
            "lag": {},
            "lag_total": [],
            "events_per_s": {},
            "recs_per_s": [],
            "latency_ms": {f"p{int(q * 100)}": [] for q in PERCENTILES},
            "dead_letters_per_s": {},
            "latest": {},
        }
        keys = sorted({k for r in rs for k in r.lag}, key=lambda k: (k[0], k[1], int(k[2]) if k[2].isdigit() else k[2]))
        for g, topic, p in keys:
            out["lag"][f"{topic}[{p}]"] = [r.lag.get((g, topic, p)) for r in rs]
        out["lag_total"] = [sum(r.lag.values()) if r.lag else None for r in rs]
        platforms = sorted({p for r in rs for p in r.events})
        reasons = sorted({k for r in rs for k in r.dead_letters})
        for p in platforms:
            out["events_per_s"][p] = []
        for reason in reasons:
            out["dead_letters_per_s"][reason] = []
        for i, r in enumerate(rs):
            prev = rs[i - 1] if i else None
            dt = r.t - prev.t if prev else 0.0
            for p in platforms:
                out["events_per_s"][p].append(_num(_rate(r.events.get(p, 0.0), prev.events.get(p, 0.0), dt)) if prev else None)
            for reason in reasons:
                out["dead_letters_per_s"][reason].append(
                    _num(_rate(r.dead_letters.get(reason, 0.0), prev.dead_letters.get(reason, 0.0), dt)) if prev else None
                )
            out["recs_per_s"].append(_num(_rate(r.recommendations, prev.recommendations, dt)) if prev else None)
            # latency percentiles over the last few seconds (bucket increases), like rate()[10s]
            old = self._before(i, self.latency_window_s) if i else None
            window = {le: c - (old.latency_buckets.get(le, 0.0) if old else 0.0) for le, c in r.latency_buckets.items()}
            for q in PERCENTILES:
                out["latency_ms"][f"p{int(q * 100)}"].append(_num(quantile(q, window)) if old else None)
        if rs:
            last = rs[-1]
            out["latest"] = {
                "t": last.t,
                "workers": last.workers,
                "model_versions": sorted(last.model_versions),
                "index_items": _num(last.index_items),
                "online_recall_at_10": _num(sum(last.recall) / len(last.recall)) if last.recall else None,
                "checkpoint_age_s": _num(last.checkpoint_age_s),
                "lag_total": sum(last.lag.values()) if last.lag else None,
                "events_total": sum(last.events.values()),
                "recommendations_total": last.recommendations,
                "dead_letters_total": dict(sorted(last.dead_letters.items())),
                "latency_p99_ms_all_time": _num(quantile(0.99, last.latency_buckets)),
                "batch_size_mean": _num(last.batch_sum / last.batch_count) if last.batch_count else None,
                "encoder_batch_ms_mean": _num(last.encoder_ms[0] / last.encoder_ms[1]) if last.encoder_ms[1] else None,
                "index_lookup_ms_mean": _num(last.index_ms[0] / last.index_ms[1]) if last.index_ms[1] else None,
                "rank_batch_ms_mean": _num(last.rank_ms[0] / last.rank_ms[1]) if last.rank_ms[1] else None,
            }
        return out


def static_file(name: str) -> bytes:
    """A file of the page (``stream/web/``), shipped as package data."""
    return resources.files("stream.web").joinpath(name).read_bytes()


STATIC = {"dashboard.html": "text/html", "dashboard.js": "application/javascript", "dashboard.css": "text/css"}


class DashboardServer:
    """``fusionrec dashboard``: lag from the broker, the workers' metrics scraped, one page for all.

    Its own ``/metrics`` exports the lag gauge (``fusionrec_consumer_lag_messages``, the same name as
    the workers') and ``fusionrec_dashboard_target_up{target}``, so Prometheus can alert on lag even
    when every worker is down.
    """

    def __init__(
        self,
        cfg: Config,
        targets: Sequence[str],
        *,
        group: str | None = None,
        host: str = "127.0.0.1",
        port: int = 6060,
        interval_s: float = 2.0,
    ) -> None:
        self.cfg = cfg
        self.targets = list(targets)
        self.group = group or cfg.worker.app_id
        self.host, self.port = host, port
        self.interval_s = interval_s
        self.history = History()
        self.registry = CollectorRegistry()
        self.lag_gauge = Gauge(
            "fusionrec_consumer_lag_messages",
            "Log end offset minus the group's committed offset, read from the broker.",
            ["group", "topic", "partition"],
            registry=self.registry,
        )
        self.target_up = Gauge(
            "fusionrec_dashboard_target_up", "1 when the last scrape of a worker succeeded.", ["target"], registry=self.registry
        )
        self.reader = LagReader(cfg.kafka, self.group, worker_lag_topics(cfg))
        self._session: Any = None

    async def _scrape(self, target: str) -> str | None:
        import aiohttp

        try:
            async with self._session.get(target, timeout=aiohttp.ClientTimeout(total=self.interval_s)) as resp:
                text = await resp.text() if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError):
            text = None
        self.target_up.labels(target).set(1 if text is not None else 0)
        return text

    async def tick(self) -> None:
        try:
            rows = await asyncio.wait_for(self.reader.read(), timeout=max(5.0, self.interval_s * 2))
        except Exception:  # the broker may be away; the page says so by a gap
            log.warning("reading the consumer lag failed", exc_info=True)
            await self.reader.stop()
        else:
            self.lag_gauge.clear()
            for row in rows:
                self.lag_gauge.labels(row.group, row.topic, str(row.partition)).set(row.lag)
        targets = await expand_targets(self.targets)
        scraped = await asyncio.gather(*(self._scrape(t) for t in targets))
        texts = [t for t in scraped if t is not None]
        # worker texts carry their own lag readings of the same group; ours (from the broker) wins
        reading = Reading.parse([_without_lag(t) for t in texts])
        own = Reading.parse([generate_latest(self.registry).decode()])
        reading.lag = own.lag
        self.history.add(reading)

    async def loop(self) -> None:
        while True:
            t0 = time.monotonic()
            await self.tick()
            await asyncio.sleep(max(0.1, self.interval_s - (time.monotonic() - t0)))

    def make_app(self) -> Any:
        from aiohttp import web

        async def page(request: web.Request) -> web.Response:
            return web.Response(body=static_file("dashboard.html"), content_type="text/html", charset="utf-8")

        async def static(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name not in STATIC:
                raise web.HTTPNotFound()
            return web.Response(body=static_file(name), headers={"Content-Type": STATIC[name]})

        async def api(request: web.Request) -> web.Response:
            return web.json_response(self.history.series())

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": "text/plain; version=0.0.4"})

        async def health(request: web.Request) -> web.Response:
            return web.json_response({"group": self.group, "targets": self.targets, "readings": len(self.history.readings)})

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/dashboard", page)
        app.router.add_get("/dashboard/{name}", static)
        app.router.add_get("/api/dashboard", api)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/health", health)
        return app

    async def serve(self) -> None:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession()
        runner = web.AppRunner(self.make_app())
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        log.info("dashboard on http://%s:%d/dashboard (group %s)", self.host, self.port, self.group)
        try:
            await self.loop()
        finally:
            await self._session.close()
            await self.reader.stop()
            await runner.cleanup()


async def expand_targets(targets: Sequence[str]) -> list[str]:
    """``dns+http://name:port/path`` stands for every address the name resolves to (Docker service replicas)."""
    from urllib.parse import urlsplit, urlunsplit

    out: list[str] = []
    for target in targets:
        if not target.startswith("dns+"):
            out.append(target)
            continue
        url = urlsplit(target[4:])
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(url.hostname, url.port or 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        for addr in sorted({info[4][0] for info in infos}):
            host = f"[{addr}]" if ":" in addr else addr
            out.append(urlunsplit((url.scheme, f"{host}:{url.port or 80}", url.path, url.query, "")))
    return out


def _without_lag(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "fusionrec_consumer_lag_messages" not in line) + "\n"


def install_ops(app: Any, cfg: Config, metrics: Metrics, recommender: Any, *, interval_s: float = 2.0) -> Any:
    """Wire a faust worker's operations side; returns the ``OnlineRecall`` the recommend agent feeds.

    * exports the model version (timings come from the core's hooks: ``metrics.MetricsHooks``);
    * exports the age of the worker's last checkpoint (``app.fusionrec_checkpointer``, when there is one);
    * every ``interval_s``: reads the group's lag from the broker into ``fusionrec_consumer_lag_messages``
      and keeps a reading of its own metrics for the dashboard;
    * pages ``/dashboard`` (+ its static files) and ``/api/dashboard``.
    """
    from stream.metrics import OnlineRecall

    metrics.set_model_version(recommender.model_version)

    def checkpoint_age() -> float | None:
        checkpointer = getattr(app, "fusionrec_checkpointer", None)  # stream.checkpointing.WorkerCheckpointer
        return checkpointer.age_s() if checkpointer is not None else None

    metrics.checkpoint_age_from(checkpoint_age)
    history = History()
    reader = LagReader(cfg.kafka, cfg.worker.app_id, worker_lag_topics(cfg))

    async def ops_tick() -> None:
        if metrics.model_version != recommender.model_version:
            metrics.set_model_version(recommender.model_version)  # a restored checkpoint may change it
        try:
            metrics.set_lag(await asyncio.wait_for(reader.read(), timeout=max(5.0, interval_s * 2)))
        except Exception as exc:  # a failed reading must never disturb the worker
            metrics.lag_read_errors.inc()
            # one line, not a traceback: on a loaded machine a reading times out now and then, and the
            # counter above is what an operator alerts on
            log.warning("reading the consumer lag failed (%s: %s); retrying next tick", type(exc).__name__, exc)
            log.debug("lag reading failure", exc_info=True)
            await reader.stop()
        history.add(Reading.parse([metrics.render().decode()]))

    app.timer(interval_s, name="fusionrec.ops_tick")(ops_tick)

    async def dashboard_page(web: Any, request: Any) -> Any:
        return web.bytes(static_file("dashboard.html"), content_type="text/html")  # aiohttp: no charset here

    async def dashboard_js(web: Any, request: Any) -> Any:
        return web.bytes(static_file("dashboard.js"), content_type=STATIC["dashboard.js"])

    async def dashboard_css(web: Any, request: Any) -> Any:
        return web.bytes(static_file("dashboard.css"), content_type=STATIC["dashboard.css"])

    async def dashboard_api(web: Any, request: Any) -> Any:
        return web.json(history.series())

    app.page("/dashboard")(dashboard_page)
    app.page("/dashboard/dashboard.js")(dashboard_js)
    app.page("/dashboard/dashboard.css")(dashboard_css)
    app.page("/api/dashboard")(dashboard_api)
    app.fusionrec_history = history
    return OnlineRecall(metrics)
