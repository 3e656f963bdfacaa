"""Candidates and their scores for a batch of requests of one platform.

Two ways, by catalog size (``model.index_exact_max``):

* **exact** (the catalog is searched with a dense product anyway): the full learned score of every
  item — text and popularity terms from one product, co-occurrence terms added where the request's
  recent items have any, consumed items masked — and the best ``text + cooc + popular`` of them are the
  candidates, exactly the top of the exhaustive ranking.  New items (when the model scores them) are
  kept in a block of their own and scored by the new-item query, so each item costs one dot product.
* **approximate** (an IVF index): the learned score of every item is never computed; the sources
  together cover the items that can reach the top of the list, and only they are scored, so the cost
  per request does not grow with the catalog:

  * **text**: the index searched with each request's folded text query (the IVF ranks by the text
    alone and returns the scores plus the popularity terms);
  * **co-occurrence**: the items with the largest co-occurrence plus popularity terms with the
    request's recent items (one sparse product per batch, ``learner.features.cooc_scores``); their
    text part is a gathered dot product;
  * **popular**: the items with the largest popularity contribution (one list per publication).

  An item found by several sources keeps the score of the most complete one: co-occurrence candidates
  carry every term; text and popular candidates carry no co-occurrence (an item whose co-occurrence
  is not among the request's best ``cooc`` gets none, the approximation this makes).

Either way the **new** items, those nobody has interacted with yet, are searched with the text query
plus the new-item query among them only: for a new item that is its whole score but for a constant,
so the best ``n`` new items by search are exactly the best by score.  The share of the exhaustive
top-K that the candidates recover is measured by ``fusionrec bench --only core``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusionrec.items import PlatformItems
from fusionrec.learner.features import add_cooc_scores, cooc_scores, top_per_row
from fusionrec.learner.model import NEW, SEQ, PlatformModel
from fusionrec.learner.sequence import id_term
from fusionrec.pipeline.precision import OldCopy
from fusionrec.pipeline.requests import RequestBatch
from fusionrec.topk import exact_top_k

__all__ = ["CandidateSizes", "Candidates", "NewBlock", "find_candidates", "exhaustive_scores", "stack"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CandidateSizes:
    text: int = 50
    cooc: int = 25
    popular: int = 10
    new: int = 10


@dataclass
class Candidates:
    """``(B, C)`` candidate rows (-1 = none) with their scores (-inf = none) and new-item flags."""

    rows: I64
    scores: F32
    new: npt.NDArray[np.bool_]


def stack(vectors: Sequence[F32 | None], dim: int) -> F32:
    out = np.zeros((len(vectors), dim), np.float32)
    for b, v in enumerate(vectors):
        if v is not None:
            out[b] = v
    return out


def _pop_part(model: PlatformModel, rows: I64) -> F32:
    """The popularity terms of the score at ``rows`` (0 for rows the model does not know yet)."""
    known = (rows >= 0) & (rows < model.n)
    return np.where(known, model.pop_score[np.where(known, rows, 0)], 0.0).astype(np.float32)


def _new_now(model: PlatformModel, items: PlatformItems) -> npt.NDArray[np.bool_]:
    """New items as of now: the published new ones, and every live row added since the publication."""
    n_now = items.n
    new = np.zeros(n_now, bool)
    new[: model.n] = model.new[: min(model.n, n_now)]
    new[model.n :] = items.alive[model.n : n_now]
    return new


class NewBlock:
    """Contiguous copies of one platform's live rows, split into the new ones and (when the text search
    is exact) the others, kept between batches while nothing changed.

    New items are usually few (those nobody has reached yet), and an exact product over them costs
    less than an IVF search that must skip every other item; when they are many (a young catalog),
    the candidate index searches among them instead.  While the catalog is small enough to search
    exactly, the text search scans the ``old`` copy only (it never returns a new item when the model
    scores them), so every item costs one dot product per request, not two.  That product runs in
    ``precision`` (``model.exact_precision``: float32, bfloat16 or int8, :mod:`fusionrec.pipeline.precision`).
    """

    def __init__(self, precision: str = "float32") -> None:
        self.precision = precision
        self._version = -1
        self.rows = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, 0), np.float32)
        self.old_rows: I64 | None = None
        self._old: OldCopy | None = None  # the old rows' vectors, prepared for the product in ``precision``

    def get(self, items: PlatformItems, version: int, new_now: npt.NDArray[np.bool_], *, with_old: bool = False) -> tuple[I64, F32, npt.NDArray[np.bool_]]:
        """``(rows, (d, len(rows)) vectors, which rows are still new)``.  Items stop being new one at a
        time, and copying the block each time would cost more than scoring it: it is rebuilt only when
        the catalog changed, or too many of its rows stopped being new — half of them alone, an eighth
        (or 256) with ``with_old``, where the text search scores those rows on their own."""
        still = new_now[self.rows] if len(self.rows) and self.rows.max() < len(new_now) else np.zeros(0, bool)
        kept = int(still.sum())
        turned = len(self.rows) - kept
        stale = (8 * turned > len(self.rows) or turned > 256) if with_old else 2 * kept < len(self.rows)
        if version != self._version or stale or kept < int(new_now.sum()) or (with_old and self.old_rows is None):
            self.rows = np.flatnonzero(new_now)
            self.vectors = np.ascontiguousarray(items.vectors[self.rows].T)
            self.old_rows = None
            if with_old:
                self.old_rows = np.flatnonzero(items.alive[: items.n] & ~new_now[: items.n])
                self._old = OldCopy.of(items.vectors[self.old_rows], self.precision)
            self._version = version
            still = np.ones(len(self.rows), bool)
        return self.rows, self.vectors, still

    def score_old(self, items: PlatformItems, q: F32, still: npt.NDArray[np.bool_], model: PlatformModel) -> tuple[F32, I64]:
        """``(scores, rows)``: ``q · v`` plus the popularity terms of every item that is not new, ``(B,
        len(rows))`` — the old copy, then the rows of the new block that stopped being new since it was built."""
        assert self.old_rows is not None and self._old is not None
        turned = self.rows[~still]
        pop = _pop_part(model, self.old_rows)
        if not len(turned):
            return self._old.product(q, pop), self.old_rows
        scores = np.empty((len(q), len(self.old_rows) + len(turned)), np.float32)
        self._old.product(q, pop, out=scores[:, : len(self.old_rows)])
        scores[:, len(self.old_rows) :] = q @ items.vectors[turned].T + _pop_part(model, turned)[None, :]
        return scores, np.concatenate([self.old_rows, turned])


NEW_SEARCH_EFFORT = 0.25


def _search_new(items: PlatformItems, block: NewBlock, version: int, q: F32, k: int, new_now: npt.NDArray[np.bool_], exact_max: int) -> tuple[F32, I64]:
    if int(new_now.sum()) > exact_max:
        assert items.index is not None
        # many new items (a long tail nobody reached yet): a quarter of the text search's effort finds
        # good enough ones for the new-item slot, whose job is exploration
        return items.index.search(q, k, allowed=new_now, effort=NEW_SEARCH_EFFORT)
    rows, vectors, still = block.get(items, version, new_now, with_old=block.old_rows is not None)
    return _block_top_k(q @ vectors, rows, still, k)


def _block_top_k(scores: F32, rows: I64, still: npt.NDArray[np.bool_], k: int) -> tuple[F32, I64]:
    """The top ``k`` of a block's scores among the rows still new, best first, padded with -inf / -1."""
    top, cols = exact_top_k(scores, k, still)
    return top, np.where(cols >= 0, rows[np.maximum(cols, 0)], -1)


def find_candidates(
    model: PlatformModel,
    items: PlatformItems,
    reqs: RequestBatch,
    sizes: CandidateSizes,
    *,
    new_slot: bool,
    new_block: NewBlock,
    catalog_version: int,
    exact_max: int,
    seq_ids: F32 | None = None,
) -> Candidates:
    """Candidates of every request (all of one platform), scored by the published ``model``.

    ``seq_ids``: the served sequence network's ID table of the platform, when its ID embeddings score
    (``h · e_i``, part of the ``seq`` feature): searched exactly, every item gets that part before the
    best are kept; through the index, the candidates found with the text part get it afterwards."""
    assert items.index is not None, "the item store was built without a candidate index"
    if seq_ids is None or reqs.seq_hidden is None or not model.weights[SEQ]:
        seq_ids = None
    fused, own, last = reqs.fused, reqs.own, reqs.last
    q_text = model.text_query(fused, own, last, reqs.seq_query)
    new_now = _new_now(model, items)
    blocks: list[tuple[I64, F32, npt.NDArray[np.bool_]]] = []

    wants_new = (model.uses_new or new_slot) and sizes.new > 0 and bool(new_now.any())
    if items.index.kind == "exact" and int(new_now.sum()) <= exact_max:
        id_part = None if seq_ids is None else _id_part(model, reqs, seq_ids, items.n)
        text_rows, text_scores, found_new = _exact_search(model, items, reqs, q_text, sizes, new_now, wants_new, new_block, catalog_version, id_part)
        blocks.append((text_rows, text_scores, np.zeros(text_rows.shape, bool)))
        return _assemble(model, reqs, q_text, blocks, text_rows, found_new, new_now, new_slot, sizes, items, new_block, catalog_version, exact_max)

    text_scores, text_rows = items.index.search(q_text, sizes.text, bias=model.pop_score)
    if model.uses_new:  # new items are scored by the new-item search below, with their new-item terms
        is_new = new_now[np.maximum(text_rows, 0)] & (text_rows >= 0)
        text_scores = np.where(is_new, -np.inf, text_scores)

    cooc_rows = np.full((len(reqs), 0), -1, np.int64)
    if model.uses_cooc and sizes.cooc > 0 and any(reqs.seq):
        cooc = cooc_scores(model, reqs.seq)
        cooc.data += _pop_part(model, cooc.indices.astype(np.int64))  # chosen by co-occurrence and popularity
        values, cooc_rows = top_per_row(cooc, sizes.cooc)
        gathered = items.vectors[np.maximum(cooc_rows, 0)]  # (B, Nc, d)
        text_part = np.matmul(gathered, q_text[:, :, None])[:, :, 0]
        cooc_total = np.where(cooc_rows >= 0, values + text_part, -np.inf).astype(np.float32)
        # a text candidate that is also a co-occurrence candidate keeps the co-occurrence score (it has every term)
        text_scores = np.where((text_rows[:, :, None] == cooc_rows[:, None, :]).any(axis=2), -np.inf, text_scores)
        blocks.append((cooc_rows, cooc_total, np.zeros(cooc_rows.shape, bool)))
    blocks.append((text_rows, text_scores, np.zeros(text_rows.shape, bool)))

    popular = model.popular
    if len(popular) and sizes.popular > 0:
        popular = popular[: sizes.popular]
        pop_rows = np.broadcast_to(popular, (len(reqs), len(popular)))
        pop_scores = q_text @ items.vectors[popular].T + _pop_part(model, popular)[None, :]
        seen = (pop_rows[:, :, None] == text_rows[:, None, :]).any(axis=2)
        if cooc_rows.shape[1]:
            seen |= (pop_rows[:, :, None] == cooc_rows[:, None, :]).any(axis=2)
        blocks.append((pop_rows, np.where(seen, -np.inf, pop_scores).astype(np.float32), np.zeros(pop_rows.shape, bool)))

    cands = _assemble(model, reqs, q_text, blocks, text_rows, None, new_now, new_slot, sizes, items, new_block, catalog_version, exact_max)
    if seq_ids is not None:
        cands.scores += np.float32(model.weights[SEQ]) * id_term(seq_ids, reqs.seq_hidden, cands.rows)
    return cands


def _id_part(model: PlatformModel, reqs: RequestBatch, table: F32, n: int) -> F32:
    """``(B, n)`` the weighted ID part of ``seq`` for every row (0 for rows the network has no embedding of)."""
    assert reqs.seq_hidden is not None
    out = np.zeros((len(reqs), n), np.float32)
    known = min(len(table), n)
    np.matmul(reqs.seq_hidden, table[:known].T, out=out[:, :known])
    out *= np.float32(model.weights[SEQ])
    return out


def _exact_search(
    model: PlatformModel,
    items: PlatformItems,
    reqs: RequestBatch,
    q_text: F32,
    sizes: CandidateSizes,
    new_now: npt.NDArray[np.bool_],
    wants_new: bool,
    block: NewBlock,
    version: int,
    id_part: F32 | None = None,
) -> tuple[I64, F32, tuple[F32, I64] | None]:
    """A catalog small enough to search exactly: the full score of every item, best first.

    Text and popularity terms come from one dense product, the co-occurrence terms are added where the
    request's recent items have any, the consumed items are masked, and the best ``text + cooc +
    popular`` items are the candidates: the top of the exhaustive ranking, exactly (up to the product's
    rounding with ``model.exact_precision`` bfloat16).  When the model
    scores new items, they are kept apart in their block and scored by the new-item query instead (each
    item costs one dot product per request).  ``id_part``: :func:`_id_part`, added to every scored row."""
    n = items.n
    found_new: tuple[F32, I64] | None = None
    if model.uses_new:  # the old items from the block's contiguous copy, also when no item is new any more
        new_rows, new_vectors, still = block.get(items, version, new_now, with_old=True)
        scores, rows = block.score_old(items, q_text, still, model)
        if wants_new:
            q_new = q_text + model.new_query(reqs.fused, reqs.last)
            found_new = _block_top_k(q_new @ new_vectors, new_rows, still, sizes.new)
    else:  # new items have no terms of their own: every live item is scored alike
        rows = np.flatnonzero(items.alive[:n])
        scores = q_text @ items.vectors[:n].T
        if len(rows) < n:
            scores = scores[:, rows]
        scores += _pop_part(model, rows)[None, :]
    if id_part is not None:  # (with the new-item terms, new items are kept apart above: their text alone)
        scores += id_part[:, rows]
    column = np.full(n, -1, np.int64)
    column[rows] = np.arange(len(rows))
    if model.uses_cooc and any(reqs.seq):
        add_cooc_scores(model, reqs.seq, scores, column)
    if any(len(c) for c in reqs.consumed):
        b = np.repeat(np.arange(len(reqs)), [len(c) for c in reqs.consumed])
        at = column[np.concatenate(reqs.consumed)]
        scores[b[at >= 0], at[at >= 0]] = -np.inf
    top, cols = exact_top_k(scores, sizes.text + sizes.cooc + sizes.popular, np.ones(len(rows), bool))
    return np.where(cols >= 0, rows[np.maximum(cols, 0)], -1), top, found_new


def _assemble(
    model: PlatformModel,
    reqs: RequestBatch,
    q_text: F32,
    blocks: list[tuple[I64, F32, npt.NDArray[np.bool_]]],
    text_rows: I64,
    found_new: tuple[F32, I64] | None,
    new_now: npt.NDArray[np.bool_],
    new_slot: bool,
    sizes: CandidateSizes,
    items: PlatformItems,
    block: NewBlock,
    version: int,
    exact_max: int,
) -> Candidates:
    """The new items (their own search, unless found already) joined to the other sources' blocks."""
    if (model.uses_new or new_slot) and sizes.new > 0 and new_now.any():
        if found_new is None:
            found_new = _search_new(items, block, version, q_text + model.new_query(reqs.fused, reqs.last), sizes.new, new_now, exact_max)
        new_scores, new_rows = found_new
        new_scores = new_scores + np.float32(model.weights[NEW])
        if not model.uses_new:  # the text search found them already: here they only feed the new-item slot
            new_scores = np.where((new_rows[:, :, None] == text_rows[:, None, :]).any(axis=2), -np.inf, new_scores)
        blocks.append((new_rows, new_scores.astype(np.float32), new_rows >= 0))

    rows = np.concatenate([b[0] for b in blocks], axis=1)
    scores = np.concatenate([b[1] for b in blocks], axis=1)
    new = np.concatenate([b[2] for b in blocks], axis=1)
    if not model.uses_new:
        new = new_now[np.maximum(rows, 0)] & (rows >= 0)
    scores[rows < 0] = -np.inf
    return Candidates(rows, scores, new)


def exhaustive_scores(model: PlatformModel, items: PlatformItems, reqs: RequestBatch, seq_ids: F32 | None = None) -> F32:
    """``(B, n)``: the learned score of every item of the platform for every request, by the same
    published model; what the candidate stage approximates (measurement and tests only: its cost grows
    with the catalog).  Dead rows score -inf; consumed items are not masked.  ``seq_ids``: the served
    network's ID table of the platform, when its ID embeddings score (:func:`_id_part`, as
    :func:`find_candidates` adds it)."""
    n = items.n
    q_text = model.text_query(reqs.fused, reqs.own, reqs.last, reqs.seq_query)
    scores = q_text @ items.vectors[:n].T
    m = min(model.n, n)
    w = model.weights
    scores[:, :m] += model.pop_score[:m]
    if model.uses_cooc and any(reqs.seq):
        cooc = cooc_scores(model, reqs.seq).toarray()
        scores[:, : cooc.shape[1]] += cooc[:, :n]
    new = _new_now(model, items)
    if model.uses_new or new.any():
        extra = (model.new_query(reqs.fused, reqs.last) @ items.vectors[:n].T) + np.float32(w[NEW])
        scores += np.where(new[None, :], extra, 0.0).astype(np.float32)
    if seq_ids is not None and reqs.seq_hidden is not None and w[SEQ]:
        scores += _id_part(model, reqs, seq_ids, n)
    scores[:, ~items.alive[:n]] = -np.inf
    return scores
