"""Memory: bytes of state per person (serialised, and an in-memory estimate) and peak RSS."""

from __future__ import annotations

import sys
from typing import Any

from stream.bench.report import peak_rss_mb

SAMPLE = 500
DICT_ENTRY = 3 * 8 + 8  # hash, key and value pointers, and the index slot, of one dict entry (CPython 3.11)


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes held by ``obj`` and what it references (containers, dataclasses, numpy arrays)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if hasattr(obj, "nbytes") and hasattr(obj, "dtype"):
        return size if getattr(obj, "base", None) is None else size + int(obj.nbytes)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(deep_size(v, seen) for v in obj)
    elif hasattr(obj, "__dataclass_fields__"):
        size += sum(deep_size(getattr(obj, f), seen) for f in obj.__dataclass_fields__)
    elif hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    return size


def memory_figures(core: dict[str, Any]) -> dict[str, Any]:
    """From the core replay's state store: mean packed bytes, what a worker holds per person, peak RSS."""
    from fusionrec.state import profile_count

    store: dict[str, bytes] = core.get("_store", {})
    sizes = [len(v) for v in store.values()]
    sample = list(store.items())[:: max(1, len(store) // SAMPLE)][:SAMPLE]
    # a worker holds each person as the key string and the packed bytes in its partition's dict
    in_memory = [sys.getsizeof(k) + sys.getsizeof(v) + DICT_ENTRY for k, v in sample]
    two_platforms = [n for n, (k, v) in zip(in_memory, sample) if profile_count(v) >= 2]
    return {
        "bytes_per_person": sum(sizes) / len(sizes) if sizes else 0.0,
        "bytes_per_person_max": max(sizes, default=0),
        "bytes_per_person_in_memory_estimate": sum(in_memory) / len(in_memory) if in_memory else 0.0,
        "bytes_per_person_in_memory_two_platforms": sum(two_platforms) / len(two_platforms) if two_platforms else None,
        "people": len(sizes),
        "events_per_person": core.get("events", 0) / len(sizes) if sizes else 0.0,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "what": (
            "bytes_per_person: mean packed state after the core replay (what a worker's partitions and the "
            "changelog hold); in-memory: the key string + the packed bytes + a dict entry, as a worker holds a "
            "person between batches (two_platforms: people with profiles on two platforms); peak_rss_mb: this "
            "process after the core benchmark (model + catalog + index + all states)"
        ),
    }
