"""The composition root: the one place that puts the core together with an encoder and an index.

``fusionrec/`` (the core) knows the encoder and the index only through the protocols of
``fusionrec.protocols``; the CLI's commands (worker, eval, bench) build their core here.
"""

from __future__ import annotations

import os
from pathlib import Path

from fusionrec.config import Config
from fusionrec.core import CoreHooks, Recommender
from fusionrec.items import IndexFactory
from fusionrec.protocols import TextEncoderT

__all__ = ["build_recommender", "index_factory", "pin_threads"]


def pin_threads(n: int) -> None:
    """Every BLAS/OpenMP pool of the process (numpy's OpenBLAS, faiss' and torch's OpenMP) to ``n``
    threads: N workers on N cores must not each start a pool per core and fight over them."""
    import faiss
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    faiss.omp_set_num_threads(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def index_factory(cfg: Config) -> IndexFactory:
    from index.candidates import CandidateIndex, IndexSettings, resolve_device

    settings = IndexSettings(exact_max=cfg.model.index_exact_max, nprobe=cfg.model.index_nprobe, device=resolve_device(cfg.model.device))
    return lambda dim, view: CandidateIndex(dim, view, settings)


def text_encoder(cfg: Config) -> TextEncoderT:
    from encoder.cache import CachedEncoder
    from encoder.hf import TextEncoder

    encoder: TextEncoderT = TextEncoder(cfg.model.encoder_dir or None, device=cfg.model.device)
    if cfg.model.vector_cache_dir:
        encoder = CachedEncoder(encoder, Path(cfg.model.vector_cache_dir).expanduser())
    return encoder


def build_recommender(cfg: Config, *, hooks: CoreHooks | None = None, restrict_to_target_platform: bool = False) -> Recommender:
    """The processing core with the configured encoder and an empty item store."""
    from encoder.items import ItemEncoder

    if cfg.model.index_threads > 0:
        pin_threads(cfg.model.index_threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rec = Recommender(cfg, ItemEncoder(text_encoder(cfg)), index_factory(cfg), hooks=hooks, restrict_to_target_platform=restrict_to_target_platform)
    if cfg.model.sequence_model:
        from fusionrec.learner.sequence import SequenceModel

        rec.install_sequence_model(SequenceModel.load(Path(cfg.model.sequence_model).expanduser()))
    return rec
