"""The evaluation report: the JSON document and a plain-text table."""

from __future__ import annotations

from typing import Any

from fusionrec.evaluation.metrics import METRIC_NAMES, MetricSet
from fusionrec.learning import FEATURES

__all__ = ["to_json", "format_table"]

MODEL = "model"


def _row(ms: MetricSet) -> dict[str, float]:
    return {name: round(v, 5) for name, v in ms.mean().items()}


def _methods(per: dict[str, MetricSet]) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, int]]:
    model = _row(per[MODEL]) if MODEL in per else _row(MetricSet())
    return model, {m: _row(s) for m, s in per.items() if m != MODEL}, {"targets": per[MODEL].n if MODEL in per else 0}


def to_json(result: Any) -> dict[str, Any]:
    overall = result.slices.get("overall", {})
    model, baselines, _ = _methods(overall)
    slices: dict[str, Any] = {}
    for name in ("cross_platform", "cold_items"):
        per = result.slices.get(name, {})
        m, b, c = _methods(per) if per else (_row(MetricSet()), {}, {"targets": 0})
        slices[name] = {"targets": c["targets"], "model": m, "baselines": b}
    slices["per_platform"] = {}
    for name, per in sorted(result.slices.items()):
        if name.startswith("platform:"):
            m, b, c = _methods(per)
            slices["per_platform"][name.split(":", 1)[1]] = {"targets": c["targets"], "model": m, "baselines": b}
    return {
        "dataset": result.dataset,
        "targets": result.targets,
        "seconds": round(result.seconds, 1),
        "model": model,
        "baselines": baselines,
        "slices": slices,
        "info": {**result.info, "features": list(FEATURES)},
    }


def format_table(report: dict[str, Any]) -> str:
    """Markdown tables: overall, then every slice; each with the model and every baseline."""
    lines = [f"dataset {report['dataset']}: {report['targets']} targets, {report['seconds']}s", ""]

    def table(title: str, n: int, model: dict[str, float], baselines: dict[str, dict[str, float]]) -> None:
        lines.append(f"{title} ({n} targets)")
        lines.append("| method | " + " | ".join(METRIC_NAMES) + " |")
        lines.append("|---|" + "---:|" * len(METRIC_NAMES))
        for name, row in [("model", model), *baselines.items()]:
            lines.append(f"| {name} | " + " | ".join(f"{row[m]:.4f}" for m in METRIC_NAMES) + " |")
        lines.append("")

    table("overall", report["targets"], report["model"], report["baselines"])
    s = report["slices"]
    for name in ("cross_platform", "cold_items"):
        table(name, s[name]["targets"], s[name]["model"], s[name]["baselines"])
    for platform, row in s["per_platform"].items():
        table(f"platform {platform}", row["targets"], row["model"], row["baselines"])
    return "\n".join(lines)
