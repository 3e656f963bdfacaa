"""Offline replay evaluation of the processing core (no Kafka): metrics, protocol, baselines, report."""

from fusionrec.evaluation.protocol.replay import EvalOptions, evaluate

__all__ = ["EvalOptions", "evaluate"]
