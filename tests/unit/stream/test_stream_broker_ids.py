"""KRaft cluster ids of the local broker: never one the storage tool would read as an option."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest

from stream.kafka_local import broker
from stream.kafka_local.broker import new_cluster_id

DASH_FIRST = uuid.UUID(bytes=b"\xf8" + bytes(15))  # first six bits 111110: base64url "-"


def test_an_id_starting_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    assert base64.urlsafe_b64encode(DASH_FIRST.bytes).decode().startswith("-")
    fine = uuid.UUID(int=12345)
    draws: Iterator[uuid.UUID] = iter([DASH_FIRST, DASH_FIRST, fine])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    assert new_cluster_id() == base64.urlsafe_b64encode(fine.bytes).decode().rstrip("=")


def test_ids_are_16_bytes_of_url_safe_base64() -> None:
    for _ in range(2000):
        cid = new_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
