"""The learned sequence model over text, as the ranker serves it (numpy; torch only for its GELU kernel).

A person's recent positive items on every platform (oldest first, ``fusion.SEQUENCE_LENGTH`` of them)
pass through a small causal transformer whose inputs are the items' frozen text vectors mapped by a
learned adaptor, ``r_i = (v_i − b) W`` (UniSRec's parametric whitening), plus a position embedding
(counted back from the newest item) and the embedding of the platform asked about; the last hidden
state ``h`` scores item ``i`` by ``h · r_i``.  As ``h · r_i = (W h) · v_i − h · (b W)`` and the second
term is the same for every item of a request, the ranker's feature is ``seq(i) = (W h) · v_i``: the
model yields one text-space query vector per request, which folds into the query the candidate index
is searched with (:meth:`~fusionrec.learner.model.PlatformModel.text_query`) and costs nothing per
item; a new item is scored through its text alone (cold start by text).

A network trained with ID embeddings beside the text (``item_text="add"``: ``r_i = (v_i − b) W + e_i``
for the items it was trained with) scores them by ``h · e_i`` too (:meth:`SequenceModel.id_scores`):
the ranker adds that part to every item's ``seq`` where the catalog is searched exactly and to the
candidates found with the text part where the index searches it; an item added since the training has
no ``e_i`` and is scored by its text.

The network is trained offline with torch (``fusionrec.evaluation.sasrec.sequence_config``:
``item_text="only"``, one expert, one block; ``"input_ids"`` networks add ID embeddings on the input
side only, ``"add"`` ones on both sides) and handed over as arrays (:meth:`SequenceModel.from_arrays`) or a file
(:meth:`SequenceModel.save`, ``model.sequence_model``); :func:`forward_last` is its forward pass in
evaluation mode, equal to the torch module's to float32 rounding (tested).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fusionrec.errors import ConfigError

__all__ = ["SequenceModel", "forward_last", "forward_packed", "id_term", "LAYER_NORM_EPS"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
LAYER_NORM_EPS = 1e-5  # torch's LayerNorm default, which trained the weights
SAVE_FORMAT = 1


@dataclass(frozen=True)
class Block:
    """One pre-LN block's weights, linear maps as ``x @ W + b``."""

    norm1: tuple[F32, F32]
    qkv: tuple[F32, F32]  # (dim, 3 dim) applied as x @ W, bias (3 dim,)
    out: tuple[F32, F32]
    norm2: tuple[F32, F32]
    ff1: tuple[F32, F32]
    ff2: tuple[F32, F32]

    @cached_property
    def q_part(self) -> tuple[F32, F32]:
        """The query columns of ``qkv``, contiguous (a strided slice multiplies several times slower)."""
        d = self.qkv[0].shape[0]
        return np.ascontiguousarray(self.qkv[0][:, :d]), self.qkv[1][:d]

    @cached_property
    def kv_part(self) -> tuple[F32, F32]:
        d = self.qkv[0].shape[0]
        return np.ascontiguousarray(self.qkv[0][:, d:]), self.qkv[1][d:]


@dataclass
class SequenceModel:
    """Weights of the network (``W``, ``b`` the adaptor; embeddings; blocks) and the platforms it knows."""

    adaptor_w: F32  # (text_dim, dim)
    adaptor_b: F32  # (text_dim,)
    pos: F32  # (max_len, dim)
    platform_emb: F32 | None  # (P, dim) in ``platforms`` order; None when trained on one platform
    platforms: tuple[str, ...]
    norm_in: tuple[F32, F32]
    blocks: tuple[Block, ...]
    norm_out: tuple[F32, F32]
    heads: int
    version: int = 0  # which training produced it (reports)
    # per platform, the ID embeddings of the items it was trained with (rows 0..len-1), added to the
    # sequence's items (``item_text="input_ids"``, or "add" with ``id_out``); None: the inputs are text alone
    id_emb: dict[str, F32] | None = None
    id_out: bool = False  # the ID embeddings score items too (``item_text="add"``): ``seq(i)`` gains ``h · e_i``
    _reps: dict[str, tuple[int, F32]] = field(default_factory=dict, repr=False)  # platform -> (store version, (n, dim))

    @property
    def max_len(self) -> int:
        return int(self.pos.shape[0])

    @property
    def dim(self) -> int:
        return int(self.adaptor_w.shape[1])

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, npt.ArrayLike],
        platforms: Sequence[str],
        heads: int,
        version: int = 0,
        id_rows: Mapping[str, tuple[int, int]] | None = None,
        id_out: bool = False,
    ) -> SequenceModel:
        """From the torch module's ``state_dict`` names (``adaptor.weight`` ``(1, text_dim, dim)``,
        ``adaptor.bias``, ``pos.weight``, ``platform.weight``, ``norm_in.*``, ``blocks.N.*``,
        ``norm_out.*``, and ``item.weight`` with ``id_rows``: each platform's ``(first row, items)`` in
        it, for an ``input_ids`` or, with ``id_out``, an ``add`` network); linear weights are transposed
        to ``x @ W``."""
        a = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
        if ("item.weight" in a) != (id_rows is not None) or a["adaptor.weight"].shape[0] != 1:
            raise ConfigError(
                "the served sequence model reads items by their text: train it with item_text='only', 'input_ids' or 'add' "
                "(the last two: give id_rows) and one expert"
            )
        if id_out and id_rows is None:
            raise ConfigError("a sequence model whose ID embeddings score items needs them (id_rows)")
        ids = None if id_rows is None else {p: a["item.weight"][lo : lo + n] for p, (lo, n) in id_rows.items()}

        def lin(name: str) -> tuple[F32, F32]:
            return np.ascontiguousarray(a[f"{name}.weight"].T), a[f"{name}.bias"]

        def norm(name: str) -> tuple[F32, F32]:
            return a[f"{name}.weight"], a[f"{name}.bias"]

        n_blocks = len({k.split(".")[1] for k in a if k.startswith("blocks.")})
        blocks = tuple(
            Block(norm(f"blocks.{n}.norm1"), lin(f"blocks.{n}.qkv"), lin(f"blocks.{n}.out"), norm(f"blocks.{n}.norm2"), lin(f"blocks.{n}.ff1"), lin(f"blocks.{n}.ff2"))
            for n in range(n_blocks)
        )
        plat = a.get("platform.weight")
        if plat is not None and plat.shape[0] != len(platforms):
            raise ConfigError(f"the sequence model has {plat.shape[0]} platform embeddings for {len(platforms)} platforms")
        return cls(
            adaptor_w=np.ascontiguousarray(a["adaptor.weight"][0]),
            adaptor_b=a["adaptor.bias"][0],
            pos=a["pos.weight"],
            platform_emb=plat,
            platforms=tuple(platforms),
            norm_in=norm("norm_in"),
            blocks=blocks,
            norm_out=norm("norm_out"),
            heads=heads,
            version=version,
            id_emb=ids,
            id_out=id_out,
        )

    def to_arrays(self) -> dict[str, F32]:
        """The torch ``state_dict`` layout again (what :meth:`from_arrays` reads), ID rows stacked."""
        out: dict[str, F32] = {
            "adaptor.weight": self.adaptor_w[None],
            "adaptor.bias": self.adaptor_b[None],
            "pos.weight": self.pos,
            "norm_in.weight": self.norm_in[0],
            "norm_in.bias": self.norm_in[1],
            "norm_out.weight": self.norm_out[0],
            "norm_out.bias": self.norm_out[1],
        }
        if self.platform_emb is not None:
            out["platform.weight"] = self.platform_emb
        for n, blk in enumerate(self.blocks):
            for name in ("qkv", "out", "ff1", "ff2"):
                w, b = getattr(blk, name)
                out[f"blocks.{n}.{name}.weight"], out[f"blocks.{n}.{name}.bias"] = np.ascontiguousarray(w.T), b
            for name in ("norm1", "norm2"):
                out[f"blocks.{n}.{name}.weight"], out[f"blocks.{n}.{name}.bias"] = getattr(blk, name)
        if self.id_emb is not None:
            out["item.weight"] = np.concatenate([self.id_emb[p] for p in sorted(self.id_emb)]) if self.id_emb else np.zeros((0, self.dim), np.float32)
        return out

    def save(self, path: str | Path) -> None:
        """One ``.npz`` file: the arrays and, as JSON, the platforms, heads, version and ID rows; written
        beside it and renamed over ``path`` (workers following the file see the old one or the new one)."""
        rows, at = {}, 0
        for p in sorted(self.id_emb or {}):
            rows[p] = (at, len((self.id_emb or {})[p]))
            at += rows[p][1]
        meta = {"format": SAVE_FORMAT, "platforms": list(self.platforms), "heads": self.heads, "version": self.version,
                "id_rows": rows if self.id_emb is not None else None, "id_out": self.id_out}  # fmt: skip
        path = Path(path)
        part = path.with_name(f".{path.name}.part")
        with open(part, "wb") as fh:  # renamed over the old file once whole: a worker never reads half of one
            np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **self.to_arrays())
        os.replace(part, path)

    @classmethod
    def load(cls, path: str | Path) -> SequenceModel:
        """What :meth:`save` wrote; a ConfigError names the file when it is not one."""
        try:
            with np.load(path) as z:
                meta = json.loads(z["__meta__"].tobytes())
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: not a sequence model file ({exc})") from exc
        if meta.get("format") != SAVE_FORMAT:
            raise ConfigError(f"{path}: sequence model format {meta.get('format')!r}, this version reads {SAVE_FORMAT}")
        id_rows = None if meta["id_rows"] is None else {p: (int(lo), int(n)) for p, (lo, n) in meta["id_rows"].items()}
        return cls.from_arrays(
            arrays, meta["platforms"], heads=int(meta["heads"]), version=int(meta["version"]), id_rows=id_rows, id_out=bool(meta.get("id_out", False))
        )

    def aligned(self, platforms: Sequence[str]) -> SequenceModel:
        """The same model with its platform embeddings in ``platforms`` order (the serving core's); a
        platform it was not trained on gets none (zeros)."""
        emb = self.platform_emb
        if emb is not None:
            known = {p: j for j, p in enumerate(self.platforms)}
            emb = np.stack([emb[known[p]] if p in known else np.zeros(self.dim, np.float32) for p in platforms]).astype(np.float32)
        return replace(self, platform_emb=emb, platforms=tuple(platforms), _reps={})

    def input_reps(self, platform: str, vectors: F32, store_version: int) -> F32:
        """``(n, dim)`` the vectors a platform's items enter a sequence with: the adaptor's output
        (plus the item's ID embedding where the network has one), recomputed when the store changed."""
        cached = self._reps.get(platform)
        if cached is not None and cached[0] == store_version and len(cached[1]) == len(vectors):
            return cached[1]
        out = ((vectors - self.adaptor_b) @ self.adaptor_w).astype(np.float32)
        ids = None if self.id_emb is None else self.id_emb.get(platform)
        if ids is not None:
            m = min(len(ids), len(out))
            out[:m] += ids[:m]  # rows added since the training have no ID embedding: their text alone
        self._reps[platform] = (store_version, out)
        return out

    def queries(self, flat: F32, lengths: I64, next_platform: I64) -> F32:
        """``(B, text_dim)`` text-space queries ``W h``: ``flat`` ``(N, dim)`` the sequences' item
        representations one sequence after another, ``lengths`` ``(B,)`` ≥ 1, ``next_platform`` ``(N,)``
        indices into ``platforms`` (each position's next item's platform, the asked platform at the
        last): :func:`forward_packed`'s layout."""
        return self.queries_hidden(flat, lengths, next_platform)[0]

    def queries_hidden(self, flat: F32, lengths: I64, next_platform: I64) -> tuple[F32, F32]:
        """:meth:`queries` and the last hidden states ``h`` ``(B, dim)`` they come from (what
        :meth:`id_scores` reads)."""
        h = forward_packed(self, flat, lengths, next_platform)
        return (h @ self.adaptor_w.T).astype(np.float32), h

    def id_table(self, platform: str) -> F32 | None:
        """``(n, dim)`` the ID embeddings that score ``platform``'s rows ``0..n-1``; None when the
        network scores by text alone."""
        if not self.id_out or self.id_emb is None:
            return None
        return self.id_emb.get(platform)

    def id_scores(self, platform: str, hidden: F32, rows: I64) -> F32:
        """``(B, C)`` the ID part of ``seq``, ``h_b · e_{rows[b, c]}``; 0 for rows the network has no
        embedding of (added since its training, or -1 = none) and for a network without ``id_out``."""
        return id_term(self.id_table(platform), hidden, rows)


def id_term(table: F32 | None, hidden: F32, rows: I64) -> F32:
    """``(B, C)``: ``hidden[b] · table[rows[b, c]]``, 0 where ``rows`` is outside ``table`` (or no table)."""
    out = np.zeros(rows.shape, np.float32)
    if table is None or not len(table):
        return out
    known = (rows >= 0) & (rows < len(table))
    gathered = table[np.where(known, rows, 0)]  # (B, C, dim)
    np.einsum("bcd,bd->bc", gathered, hidden.astype(np.float32), out=out)
    out[~known] = 0.0
    return out


def _norm(x: F32, p: tuple[F32, F32]) -> F32:
    """LayerNorm over the last axis, in float32."""
    c = x - x.mean(-1, keepdims=True, dtype=np.float32)
    scale = 1.0 / np.sqrt(np.einsum("...d,...d->...", c, c)[..., None] / np.float32(x.shape[-1]) + np.float32(LAYER_NORM_EPS))
    c *= scale.astype(np.float32)
    c *= p[0]
    c += p[1]
    return c


def _gelu(x: F32) -> F32:
    """The exact (erf) GELU the network was trained with; torch's kernel, ~20× scipy's ``erf`` here
    (torch is loaded already: the text encoder and the trainer run on it)."""
    import torch

    return torch.nn.functional.gelu(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()


def forward_last(model: SequenceModel, inputs: F32, lengths: I64, next_platform: I64) -> F32:
    """``(B, dim)`` the last real position's output of the network (evaluation mode: no dropout), from
    right-padded ``inputs`` ``(B, L, dim)`` and ``next_platform`` ``(B, L)``: :func:`forward_packed`
    on their real positions."""
    real = np.arange(inputs.shape[1])[None, :] < lengths[:, None]
    return forward_packed(model, inputs[real], lengths, next_platform[real])


def forward_packed(model: SequenceModel, flat: F32, lengths: I64, next_platform: I64) -> F32:
    """``(B, dim)`` the last position's output of each sequence (evaluation mode: no dropout).

    ``flat`` ``(N, dim)`` holds the sequences' item representations one sequence after another, oldest
    first (``N = lengths.sum()``, every length ≥ 1), ``next_platform`` ``(N,)`` each position's next
    item's platform (the asked one at the last).  Per-position work (embeddings, LayerNorms, the
    keys' and values' product) runs on the real positions only: journeys are mostly shorter than the
    longest of their batch, and padding them multiplied that work several times.  Only the attention
    sees the padded ``(B, L)`` layout.  Every block but the last runs on every position; the last one
    only needs its keys and values everywhere and its query, attention and feed-forward at the last
    position, which is most of the saving with one or two blocks."""
    b, L, d = len(lengths), int(lengths.max()), model.dim
    starts = np.cumsum(lengths) - lengths
    seq = np.repeat(np.arange(b), lengths)
    at = np.arange(len(flat)) - starts[seq]  # position within its sequence
    last = starts + lengths - 1  # flat index of each sequence's newest item
    x = flat + model.pos[np.minimum(lengths[seq] - 1 - at, model.max_len - 1)]
    if model.platform_emb is not None:
        x += model.platform_emb[next_platform]
    x = _norm(x, model.norm_in)
    for n, blk in enumerate(model.blocks):
        y = _norm(x, blk.norm1)
        if n < len(model.blocks) - 1:
            q, k, v = _heads(_padded(y @ blk.qkv[0] + blk.qkv[1], seq, at, b, L), b, L, model.heads)
            mask = np.triu(np.ones((L, L), bool), 1)[None, None]
            x = x + _attend(q, k, v, mask, blk).reshape(b, L, d)[seq, at]
            x = x + _feed_forward(x, blk)
        else:  # the last block: the query, the attention and the feed-forward at the last position only
            k, v = _keys_values(_padded(y @ blk.kv_part[0] + blk.kv_part[1], seq, at, b, L), b, L, model.heads)
            q = (y[last] @ blk.q_part[0] + blk.q_part[1]).reshape(b, model.heads, 1, d // model.heads)
            mask = (np.arange(L)[None, :] >= lengths[:, None])[:, None, None, :]
            x = x[last] + _attend(q, k, v, mask, blk).reshape(b, d)
            x = x + _feed_forward(x, blk)
            return _norm(x, model.norm_out)
    return _norm(x[last], model.norm_out)  # pragma: no cover - a model has at least one block


def _padded(rows: F32, seq: I64, at: I64, b: int, L: int) -> F32:
    """``(B * L, width)`` the packed rows laid out right-padded (zeros at the padding)."""
    out = np.zeros((b, L, rows.shape[1]), np.float32)
    out[seq, at] = rows
    return out.reshape(b * L, rows.shape[1])


def _heads(qkv: F32, b: int, L: int, heads: int) -> tuple[F32, F32, F32]:
    """``(B, H, L, hd)`` queries, ``(B, H, hd, L)`` keys (ready for the product), ``(B, H, L, hd)`` values."""
    d = qkv.shape[1] // 3
    q = np.ascontiguousarray(qkv[:, :d].reshape(b, L, heads, d // heads).transpose(0, 2, 1, 3))
    return (q, *_keys_values(qkv[:, d:], b, L, heads))


def _keys_values(kv: F32, b: int, L: int, heads: int) -> tuple[F32, F32]:
    d = kv.shape[1] // 2
    split = kv.reshape(b, L, 2, heads, d // heads)
    return np.ascontiguousarray(split[:, :, 0].transpose(0, 2, 3, 1)), np.ascontiguousarray(split[:, :, 1].transpose(0, 2, 1, 3))


def _attend(q: F32, k: F32, v: F32, mask: npt.NDArray[np.bool_], blk: Block) -> F32:
    """Masked softmax attention, heads joined and projected: ``(B, Lq, d)`` flattened to rows."""
    att = q @ k * np.float32(q.shape[-1] ** -0.5)
    att[np.broadcast_to(mask, att.shape)] = -np.inf
    att -= att.max(-1, keepdims=True)
    np.exp(att, out=att)
    att /= att.sum(-1, keepdims=True)
    y = att @ v  # (B, H, Lq, hd)
    b, h, lq, hd = y.shape
    return y.transpose(0, 2, 1, 3).reshape(b * lq, h * hd) @ blk.out[0] + blk.out[1]


def _feed_forward(x: F32, blk: Block) -> F32:
    shape = x.shape
    flat = _norm(x, blk.norm2).reshape(-1, shape[-1])
    return (_gelu(flat @ blk.ff1[0] + blk.ff1[1]) @ blk.ff2[0] + blk.ff2[1]).reshape(shape)
