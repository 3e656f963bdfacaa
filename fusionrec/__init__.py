"""fusionrec: a streaming, real-time, multi-platform recommender.

This package is the pure core (contracts, configuration, fusion, ranking, evaluation protocol).
It imports neither Kafka clients nor faust; ``stream/`` wraps it, ``encoder/`` and ``index/``
provide the text encoder and the vector index.
"""

__version__ = "0.1.0"
