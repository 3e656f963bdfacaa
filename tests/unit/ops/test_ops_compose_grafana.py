"""Production wiring, checked by parsing (there is no Docker engine here): docker-compose.yml, the
Dockerfile, Prometheus' config and Grafana's provisioning and dashboard (every panel's query names a
metric the workers export)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]
DASHBOARDS = REPO / "dashboards"
METRIC = re.compile(r"\b(fusionrec_[a-z0-9_]+)\b")
DASHBOARD_PROCESS_ONLY = {"fusionrec_dashboard_target_up"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


def grafana_dashboards() -> list[Path]:
    return sorted((DASHBOARDS / "grafana" / "dashboards").glob("*.json"))


def all_targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            out += [(inner["title"], t) for t in inner.get("targets", [])]
    return out


def test_kafka_is_the_official_image_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.2"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft: no ZooKeeper
    assert "CONTROLLER" in env["KAFKA_LISTENERS"] and env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert "zookeeper" not in json.dumps(compose).lower()


def test_workers_are_built_from_the_dockerfile_and_scale(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker.get("build") in (".", {"context": "."}) and (REPO / "Dockerfile").exists()
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker  # replicas need generated names
    assert worker["command"][:2] == ["fusionrec", "worker"]
    env = worker["environment"]
    assert env["FUSIONREC_KAFKA_BOOTSTRAP"] == "kafka:9092" and env["FUSIONREC_WEB_HOST"] == "0.0.0.0"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "constraints.txt" in dockerfile and re.search(r'CMD \["fusionrec", "worker"', dockerfile)
    for copied in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (REPO / copied).exists(), copied


def test_prometheus_scrapes_every_worker_and_the_dashboard(compose: dict[str, Any]) -> None:
    prom = compose["services"]["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prom["volumes"] if m.startswith("./")}
    config_path = REPO / mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    worker_port = int(compose["services"]["worker"]["environment"]["FUSIONREC_WEB_PORT"])
    sd = jobs["fusionrec-worker"]["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and sd["port"] == worker_port  # every replica, found through Docker's DNS
    dash_cmd = compose["services"]["dashboard"]["command"]
    assert jobs["fusionrec-dashboard"]["static_configs"][0]["targets"] == [f"dashboard:{dash_cmd[dash_cmd.index('--port') + 1]}"]
    assert f"dns+http://worker:{worker_port}/metrics" in dash_cmd


def test_prometheus_config_passes_promtool(promtool: str) -> None:
    """Also checks the rule files it names (dashboards/alerts.yml)."""
    result = subprocess.run([promtool, "check", "config", str(DASHBOARDS / "prometheus.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {m.split(":")[1]: REPO / m.split(":")[0] for m in grafana["volumes"] if m.startswith("./")}
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "fusionrec.yml").read_text())["providers"]
    assert mounts[provider["options"]["path"]] == DASHBOARDS / "grafana" / "dashboards"
    assert grafana_dashboards()
    for path in grafana_dashboards():
        for title, target in all_targets(json.loads(path.read_text())):
            assert target["datasource"]["uid"] == datasource["uid"], title


def test_every_panel_query_names_a_metric_the_workers_export() -> None:
    exported = Metrics().exported_names() | DASHBOARD_PROCESS_ONLY
    for path in grafana_dashboards():
        dashboard = json.loads(path.read_text())
        targets = all_targets(dashboard)
        assert targets
        for title, target in targets:
            names = set(METRIC.findall(target["expr"]))
            assert names, f"{path.name} / {title}: {target['expr']} queries no fusionrec metric"
            assert names <= exported, f"{path.name} / {title}: not exported: {sorted(names - exported)}"


def test_the_dashboard_covers_what_operators_watch() -> None:
    (path,) = grafana_dashboards()
    exprs = " ".join(t["expr"] for _, t in all_targets(json.loads(path.read_text())))
    for needed in (
        "fusionrec_consumer_lag_messages",  # lag
        "fusionrec_events_total",  # throughput
        "fusionrec_event_to_recommendation_ms_bucket",  # latency
        "fusionrec_dead_letters_total",  # dead letters
        "fusionrec_model_info",  # model
        "fusionrec_online_recall",
        "fusionrec_checkpoint_age_seconds",
        "fusionrec_batch_size_events",
        "fusionrec_encoder_batch_ms",
        "fusionrec_index_op_ms",
        "fusionrec_rank_batch_ms",
        "fusionrec_index_items",
    ):
        assert needed in exprs, needed
    # panels do not overlap on Grafana's 24-column grid
    cells: set[tuple[int, int]] = set()
    for panel in json.loads(path.read_text())["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, panel["title"]
        cells |= mine


def test_health_checks_probe_readiness(compose: dict[str, Any]) -> None:
    """The image's and the compose workers' checks hit /ready (503 until the catalog is loaded, partitions
    assigned and no state restoring), not /health (200 whenever the process answers); the dashboard and
    the replay containers, from the same image, check themselves or nothing. (The integration test
    tests/integration/test_readiness_kafka.py runs these commands against a starting worker.)"""
    dockerfile = (REPO / "Dockerfile").read_text()
    (check,) = re.findall(r"^HEALTHCHECK .* CMD (.*)$", dockerfile, re.M)
    assert "/ready'" in check and "/health" not in check and "FUSIONREC_WEB_PORT" in check
    services = compose["services"]
    worker = services["worker"]["healthcheck"]["test"]
    assert worker[:3] == ["CMD", "python", "-c"] and "/ready'" in worker[3] and "/health" not in worker[3]
    dash_port = services["dashboard"]["command"][services["dashboard"]["command"].index("--port") + 1]
    assert f"127.0.0.1:{dash_port}/health'" in services["dashboard"]["healthcheck"]["test"][3]
    assert services["replay"]["healthcheck"] == {"disable": True}
