"""Alert rules (dashboards/alerts.yml): valid for promtool, unit-tested with synthetic series (alerts_test.yml:
every alert fires and stays quiet), shipped with the compose Prometheus, and built on exported metrics only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from stream.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "dashboards" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
METRIC = re.compile(r"\b(fusionrec_[a-z0-9_]+)\b")
DASHBOARD_PROCESS_ONLY = {"fusionrec_dashboard_target_up"}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    result = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert [str((RULE_TESTS.parent / f).resolve()) for f in tests["rule_files"]] == [str(RULES)]
    cases = [case for test in tests["tests"] for case in test.get("alert_rule_test", [])]
    for name in alerts():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name} is never tested firing"
        assert any(not case["exp_alerts"] for case in mine), f"{name} is never tested quiet"
    assert {case["alertname"] for case in cases} <= set(alerts())


def test_the_alerts_operators_need_are_there() -> None:
    exprs = {name: rule["expr"] for name, rule in alerts().items()}
    assert "fusionrec_consumer_lag_messages" in " ".join(r["expr"] for r in rules() if "record" in r)
    assert "fusionrec:consumer_lag_messages:sum" in exprs["FusionrecConsumerLagGrowing"]
    assert "fusionrec_event_to_recommendation_ms_bucket" in exprs["FusionrecRecommendationLatencyHigh"]
    assert "> 1000" in exprs["FusionrecRecommendationLatencyHigh"]  # the freshness bar: 1 s
    assert "fusionrec_dead_letters_total" in exprs["FusionrecDeadLetterRateHigh"]
    assert "fusionrec_checkpoint_age_seconds" in exprs["FusionrecCheckpointStale"]
    assert 'up{job="fusionrec-worker"}' in exprs["FusionrecWorkerDown"]
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_alerts_query_only_exported_metrics() -> None:
    exported = Metrics().exported_names() | DASHBOARD_PROCESS_ONLY
    for rule in rules():
        names = set(METRIC.findall(rule["expr"]))
        assert names <= exported, f"{rule.get('alert') or rule['record']}: not exported: {sorted(names - exported)}"


def test_alerts_ship_with_the_compose_prometheus() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = {m.split(":")[1]: REPO / m.split(":")[0] for m in compose["services"]["prometheus"]["volumes"] if m.startswith("./")}
    config_in_container = Path("/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(mounts[str(config_in_container)].read_text())
    # Prometheus resolves rule files relative to its config file
    loaded = [mounts[str(config_in_container.parent / f)] for f in config["rule_files"]]
    assert loaded == [RULES]


def test_promtool_missing_in_ci_fails_rather_than_skips(tmp_path: Path) -> None:
    """Without promtool on the PATH the promtool tests skip on a developer machine and fail in CI."""
    no_promtool = {"PATH": str(Path(sys.executable).parent), "HOME": os.environ.get("HOME", str(tmp_path))}
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__)), "-q", "-p", "no:cacheprovider", "-k", "promtool_check"]
    developer = subprocess.run(cmd, env={**no_promtool, "CI": ""}, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert developer.returncode == 0 and "1 skipped" in developer.stdout, developer.stdout
    ci = subprocess.run(cmd, env={**no_promtool, "CI": "true"}, cwd=REPO, capture_output=True, text=True, timeout=300)
    # (a failure in a fixture is reported as an error: the run fails all the same)
    assert ci.returncode == 1 and "skipped" not in ci.stdout and "promtool is missing" in ci.stdout, ci.stdout
