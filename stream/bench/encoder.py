"""Encoder: items/s of our TextEncoder against ``SentenceTransformer.encode`` on the same model.

Same texts (real item titles and text through ``encoder.templates.item_text``), same device, same
max sequence length (128) and batch size (64).  The two runs are interleaved and each is repeated;
the best time of each counts.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

BATCH = 64
MAX_LENGTH = 128


def item_texts(dataset: str, n: int) -> list[str]:
    from encoder.templates import item_text
    from fusionrec.dataset import read_items

    return [item_text(i.title, i.text, i.platform, i.categories) for i in itertools.islice(read_items(dataset), n)]


def bench_encoder(
    dataset: str, *, device: str = "cpu", quick: bool = False, n_texts: int | None = None, repeats: int = 2, model_dir: str | None = None
) -> dict[str, Any]:
    """``model_dir``: a local model directory (default: ``FUSIONREC_ENCODER_DIR``, else the bundled model)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from encoder.hf import TextEncoder, default_model_dir
    from fusionrec.config import load_config

    on_gpu = device.startswith("cuda")
    texts = item_texts(dataset, n_texts or (256 if quick else 10_000 if on_gpu else 2000))  # a GPU needs more to time
    model = model_dir or load_config().model.encoder_dir or str(default_model_dir())
    ours = TextEncoder(model, device=device, max_length=MAX_LENGTH)
    ref = SentenceTransformer(model, device=device)
    ref.max_seq_length = MAX_LENGTH

    def run_ours() -> np.ndarray:
        return ours.encode(texts, batch_size=BATCH)

    def run_ref() -> np.ndarray:
        return ref.encode(texts, batch_size=BATCH, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)

    warm = texts[: BATCH]
    ours.encode(warm, batch_size=BATCH)
    ref.encode(warm, batch_size=BATCH, show_progress_bar=False)
    best = {"ours": float("inf"), "ref": float("inf")}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, fn in (("ours", run_ours), ("ref", run_ref)):
            if on_gpu:
                torch.cuda.synchronize()
            start = time.perf_counter()
            outputs[name] = fn()
            if on_gpu:
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - start)
    cos = np.sum(outputs["ours"] * outputs["ref"], axis=1)
    ours_ips, ref_ips = len(texts) / best["ours"], len(texts) / best["ref"]
    return {
        "items_per_s": ours_ips,
        "sentence_transformers_items_per_s": ref_ips,
        "ratio_vs_sentence_transformers": ours_ips / ref_ips,
        "texts": len(texts),
        "mean_chars": float(np.mean([len(t) for t in texts])),
        "batch_size": BATCH,
        "max_seq_length": MAX_LENGTH,
        "model": ours.model_id,
        "device": device,
        "dtype": str(ours._dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        "min_cosine_vs_sentence_transformers": float(cos.min()),
        "what": "best of interleaved runs; our encoder tokenises once and sorts by length (less padding)",
    }
