"""Who does what in a KRaft cluster, asked of the cluster itself: the leader of each partition of a topic
(metadata), and the active controller (the leader of the ``__cluster_metadata`` Raft quorum).

The controller id in a Metadata or DescribeCluster answer does not name the active controller under
KRaft: brokers put a random live broker there (clients send admin requests to it, which forwards them),
so the quorum is asked with DescribeQuorum (API key 55, what ``kafka-metadata-quorum.sh describe
--status`` sends; brokers forward it to the controllers).  aiokafka has no DescribeQuorum, so version 0
is declared here with aiokafka's protocol types.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

METADATA_TOPIC = "__cluster_metadata"
T = TypeVar("T")


async def _ask(bootstrap: str, ask: Callable[[AIOKafkaAdminClient], Awaitable[T]], attempts: int = 20) -> T:
    """``ask`` with an admin client, again with a fresh one when the node it picked is down: right after
    a broker is killed, the cluster metadata still lists it."""
    last: Exception | None = None
    for _ in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            return await ask(admin)
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise RuntimeError(f"no live node answered after {attempts} attempts: {last!r}")


_REPLICA_STATE = (("replica_id", Int32), ("log_end_offset", Int64), ("tags", TaggedFields))


class DescribeQuorumResponse_v0(Response):
    API_KEY = 55
    API_VERSION = 0
    SCHEMA = Schema(
        ("error_code", Int16),
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("high_watermark", Int64),
                        ("current_voters", CompactArray(*_REPLICA_STATE)),
                        ("observers", CompactArray(*_REPLICA_STATE)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 0
    RESPONSE_TYPE = DescribeQuorumResponse_v0
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest(Request[DescribeQuorumRequest_v0]):
    API_KEY = 55

    def build(self, request_struct_class: type[DescribeQuorumRequest_v0]) -> DescribeQuorumRequest_v0:
        return request_struct_class([(METADATA_TOPIC, [(0, {})], {})], {})


async def quorum_leader(bootstrap: str) -> int:
    """The node id of the active controller (the metadata quorum's leader)."""

    async def ask(admin: AIOKafkaAdminClient) -> int:
        client = admin._client  # noqa: SLF001 - aiokafka sends a request to a node only through its client
        response = await client.send(client.get_random_node(), DescribeQuorumRequest())
        obj = response.to_object()
        if obj["error_code"]:
            raise for_code(obj["error_code"])()
        (topic,) = obj["topics"]
        (partition,) = topic["partitions"]
        if partition["error_code"]:
            raise for_code(partition["error_code"])()
        return int(partition["leader_id"])

    return await _ask(bootstrap, ask)


async def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> the node id of its leader (-1 while it has none)."""

    async def ask(admin: AIOKafkaAdminClient) -> dict[int, int]:
        (described,) = await admin.describe_topics([topic])
        return {int(p["partition"]): int(p["leader"]) for p in described["partitions"]}

    return await _ask(bootstrap, ask)


async def metadata_controller(bootstrap: str) -> int:
    """The controller id a DescribeCluster answer names (under KRaft: any live broker, see above)."""

    async def ask(admin: AIOKafkaAdminClient) -> int:
        return int((await admin.describe_cluster())["controller_id"])

    return await _ask(bootstrap, ask)
