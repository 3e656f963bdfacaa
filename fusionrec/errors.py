"""The one exception module of fusionrec.

Every error the project raises on purpose derives from :class:`RecError`, so a caller can catch the
whole family in one place.  Messages name the valid options where there are any.
"""

from __future__ import annotations

__all__ = [
    "RecError",
    "ConfigError",
    "DecodeError",
    "ValidationError",
    "EncoderError",
    "IndexError_",
    "IndexNotReady",
    "CheckpointError",
    "BrokerError",
    "TopicError",
    "DatasetError",
]


class RecError(Exception):
    """Base class of every fusionrec error."""


class ConfigError(RecError, ValueError):
    """A setting is missing, of the wrong type or out of range."""


class DecodeError(RecError, ValueError):
    """A message is not decodable (bad JSON, not an object, too large).

    ``reason`` is a short machine-readable code that goes on the dead-letter topic and into the
    dead-letter counter's label.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ValidationError(DecodeError):
    """A decoded message breaks its contract (missing or wrongly typed field, unknown platform...)."""


class EncoderError(RecError):
    """The text encoder could not be loaded or run."""


class IndexError_(RecError):  # trailing underscore: do not shadow the builtin IndexError
    """The item index was used wrongly (dimension mismatch, unknown item...)."""


class IndexNotReady(IndexError_):
    """The item index holds no items yet for the requested platform."""


class CheckpointError(RecError):
    """A checkpoint could not be written, or a stored one is corrupt or incompatible."""


class BrokerError(RecError):
    """The local Kafka broker could not be fetched, started or reached."""


class TopicError(RecError):
    """A topic fusionrec needs could not be created, or exists with settings it cannot work with."""


class DatasetError(RecError, ValueError):
    """A dataset folder does not follow the documented layout."""
