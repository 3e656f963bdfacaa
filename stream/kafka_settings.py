"""Connection settings shared by every Kafka client fusionrec makes (SASL/SSL pass through to all)."""

from __future__ import annotations

import ssl
from typing import Any

from fusionrec.config import KafkaConfig


def client_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for aiokafka producers, consumers and admin clients."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl.create_default_context(cafile=cfg.ssl_cafile or None)
    if cfg.security_protocol.startswith("SASL"):
        kwargs.update(
            sasl_mechanism=cfg.sasl_mechanism or "PLAIN",
            sasl_plain_username=cfg.sasl_username,
            sasl_plain_password=cfg.sasl_password,
        )
    return kwargs


def faust_broker_credentials(cfg: KafkaConfig) -> Any:
    """The same settings in the form faust's ``broker_credentials`` takes (None for PLAINTEXT)."""
    import faust  # lazy: faust is heavy and only the worker needs it

    ssl_context = (
        ssl.create_default_context(cafile=cfg.ssl_cafile or None)
        if cfg.security_protocol in ("SSL", "SASL_SSL")
        else None
    )
    if cfg.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=cfg.sasl_username,
            password=cfg.sasl_password,
            mechanism=cfg.sasl_mechanism or "PLAIN",
            ssl_context=ssl_context,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None
