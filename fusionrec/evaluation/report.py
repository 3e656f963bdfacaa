"""The evaluation report: the JSON document and a plain-text table."""

from __future__ import annotations

from typing import Any

from fusionrec.evaluation.cold import describe_pools
from fusionrec.evaluation.metrics import BEYOND_NAMES, METRIC_NAMES, BeyondAccuracy, MetricSet
from fusionrec.learner.model import FEATURES

__all__ = ["to_json", "format_table"]

MODEL = "model"


def _row(ms: MetricSet, beyond: BeyondAccuracy | None = None, catalog_size: int = 0) -> dict[str, float]:
    row = {name: round(v, 5) for name, v in ms.mean().items()}
    if beyond is not None:
        row.update({name: round(v, 5) for name, v in beyond.mean(catalog_size).items()})
    return row


def _methods(
    per: dict[str, MetricSet], beyond: dict[str, BeyondAccuracy], catalog_size: int
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, int]]:
    def row(method: str) -> dict[str, float]:
        return _row(per[method], beyond.get(method), catalog_size) if method in per else _row(MetricSet())

    baselines = {m: row(m) for m in per if m != MODEL}
    return row(MODEL), baselines, {"targets": per[MODEL].n if MODEL in per else 0}


def to_json(result: Any) -> dict[str, Any]:
    sizes: dict[str, int] = result.info.get("catalog_sizes", {})

    def methods(name: str) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, int]]:
        catalog = sum(sizes.get(p, 0) for p in result.slice_platforms.get(name, ()))
        return _methods(result.slices.get(name, {}), result.beyond.get(name, {}), catalog)

    model, baselines, _ = methods("overall")
    slices: dict[str, Any] = {}
    for name in ("cross_platform", "cold_items"):
        m, b, c = methods(name) if result.slices.get(name) else (_row(MetricSet()), {}, {"targets": 0})
        slices[name] = {"targets": c["targets"], "model": m, "baselines": b}
    slices["per_platform"] = {}
    for name in sorted(result.slices):
        if name.startswith("platform:"):
            m, b, c = methods(name)
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
        columns = [m for m in (*METRIC_NAMES, *BEYOND_NAMES) if m in model]
        lines.append("| method | " + " | ".join(columns) + " |")
        lines.append("|---|" + "---:|" * len(columns))
        for name, row in [("model", model), *baselines.items()]:
            lines.append(f"| {name} | " + " | ".join(f"{row.get(m, float('nan')):.4f}" for m in columns) + " |")
        lines.append("")

    table("overall", report["targets"], report["model"], report["baselines"])
    s = report["slices"]
    for name in ("cross_platform", "cold_items"):
        table(name, s[name]["targets"], s[name]["model"], s[name]["baselines"])
    if pools := describe_pools(report["info"].get("cold_item_pools")):
        lines += [pools, ""]
    for platform, row in s["per_platform"].items():
        table(f"platform {platform}", row["targets"], row["model"], row["baselines"])
    return "\n".join(lines)
