"""The learned, global (shared across persons) part of the model, trained online from the stream.

Pieces: interaction statistics (:mod:`.stats`), the published model the ranker reads (:mod:`.model`),
features (:mod:`.features`), the fitted weights (:mod:`.trainer`) and checkpoints (:mod:`.persistence`).
:class:`OnlineLearner` ties them: the serving path calls :meth:`~OnlineLearner.observe` per event (list
appends), :meth:`~OnlineLearner.train` per batch (one vectorised pass over the sampled examples) and
:meth:`~OnlineLearner.maybe_publish` at the start of a batch; a batch is always ranked with one
published model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fusionrec.items import ItemStore
from fusionrec.learner.features import features_at
from fusionrec.learner.model import FEATURES, INITIAL_WEIGHTS, POP_LONG, POP_SHORT, PlatformModel, PublishedModel
from fusionrec.learner.sequence import SequenceModel
from fusionrec.learner.stats import InteractionStats
from fusionrec.learner.trainer import Adagrad, Example, negative_draw
from fusionrec.policy.context import ContextGate

__all__ = ["OnlineLearner", "Example", "FEATURES"]

F32 = npt.NDArray[np.float32]


class OnlineLearner:
    def __init__(
        self,
        store: ItemStore,
        *,
        publish_every: int = 256,
        negatives: int = 64,
        lr: float = 0.1,
        train_every: int = 2,
        max_examples: int = 32,
        popular: int = 20,
        cooc_neighbours: int = 0,
        seed: int = 0,
    ) -> None:
        self.store = store
        self.publish_every = publish_every
        self.negatives = negatives
        self.train_every = train_every
        self.max_examples = max_examples
        self.popular = popular
        self.rng = np.random.default_rng(seed)
        self.stats = InteractionStats(neighbours=cooc_neighbours)
        self.adagrad = Adagrad(lr)
        self.context = ContextGate()
        self.model = PublishedModel(0, {})
        self.learned = 0
        self.positives = 0
        self.unpublished = 0
        self._examples: list[Example] = []
        self._weights: dict[str, npt.NDArray[np.float64]] = {}  # the published copy of the weights
        self._store_version = -1
        self.sequence: SequenceModel | None = None  # the served sequence network (its ID part of ``seq``)

    # ---------------------------------------------------------------------------- stream

    def observe(self, platform: str, row: int, ts: float, positive: bool, seq: list[int], example: Example | None) -> None:
        """One learned event.  A positive one is recorded in the statistics with ``seq``, the person's
        earlier positive items of the platform (rows, oldest first); ``example`` is queued for
        :meth:`train` (callers pass one when :meth:`wants_example` said so)."""
        self.learned += 1
        self.unpublished += 1
        if not positive:
            return
        self.positives += 1
        self.stats.record(platform, row, ts, seq[::-1])
        if example is not None:
            self._examples.append(example)

    def wants_example(self) -> bool:
        """Whether the next positive event is a training example: every ``train_every``-th one, at most
        ``max_examples`` per batch (11 weights per platform need hundreds of steps, not thousands a second)."""
        return (self.positives + 1) % self.train_every == 0 and len(self._examples) < self.max_examples

    def train(self) -> int:
        """Learn from the examples observed since the last call; returns how many."""
        examples, self._examples = self._examples, []
        groups: dict[str, list[Example]] = defaultdict(list)
        for ex in examples:
            groups[ex.platform].append(ex)
        for platform, group in groups.items():
            self._train_platform(platform, group)
        return len(examples)

    def train_on(self, examples: Sequence[Example]) -> int:
        """Learn from these examples now, as from the stream's (the frozen protocol's refit)."""
        self._examples.extend(examples)
        return self.train()

    def _train_platform(self, platform: str, group: list[Example]) -> None:
        model = self.model.platforms.get(platform)
        items = self.store.platforms.get(platform)
        if model is None or items is None or model.n < 2:
            return
        n = model.n
        neg, log_q = negative_draw(self.rng, items.alive[:n], np.expm1(model.pop[1].astype(np.float64)), self.negatives)
        if len(neg) == 0:
            return
        rows = np.array([ex.row for ex in group], np.int64)
        ok = rows < n
        if not ok.all():  # an item added since the publication: nothing published knows it yet
            group = [ex for ex, keep in zip(group, ok) if keep]
            rows = rows[ok]
        if not group:
            return
        d = self.store.dim
        stack = lambda vs: np.stack([v if v is not None else np.zeros(d, np.float32) for v in vs])  # noqa: E731
        feats = features_at(
            model,
            items.vectors,
            stack([ex.fused for ex in group]),
            stack([ex.own for ex in group]),
            stack([ex.last for ex in group]),
            [ex.seq for ex in group],
            rows,
            neg,
            stack([ex.seq_query for ex in group]) if any(ex.seq_query is not None for ex in group) else None,
            *self._seq_id_part(platform, group),
        )
        valid = np.ones((len(rows), 1 + len(neg)), bool)
        valid[:, 1:] = neg[None, :] != rows[:, None]
        self.adagrad.step(platform, feats, log_q, valid)

    def _seq_id_part(self, platform: str, group: Sequence[Example]) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.float32] | None]:
        """``(ID table, (M, h) hidden states)`` when the served network's ID embeddings score
        ``platform``'s items and the examples have hidden states; else ``(None, None)``."""
        table = None if self.sequence is None else self.sequence.id_table(platform)
        if table is None or not any(ex.seq_hidden is not None for ex in group):
            return None, None
        none = np.zeros(table.shape[1], np.float32)
        return table, np.stack([none if ex.seq_hidden is None else ex.seq_hidden for ex in group])

    # ---------------------------------------------------------------------------- publishing

    def maybe_publish(self) -> bool:
        """At the start of a batch: the statistics recorded since the last batch always (they are
        counts: the sooner the ranker sees them the better, measured: steam NDCG@10 0.0586 when they
        waited for the weights' 256 events, 0.0663 when applied every 16), the fitted weights every
        ``publish_every`` learned events."""
        if self.unpublished >= self.publish_every:
            self.publish()
            return True
        if self.stats.unapplied or self.store.version != self._store_version:
            self._publish_stats()
        return False

    def publish(self) -> None:
        """Apply the recorded statistics and hand the ranker the live weights with them."""
        self._weights = {p: w.copy() for p, w in self.adagrad.weights.items()}
        self.context.publish()
        self.unpublished = 0
        self._publish_stats()

    def _publish_stats(self) -> None:
        sizes = {p: items.n for p, items in self.store.platforms.items()}
        self.stats.publish(sizes)
        platforms = {p: self._platform_model(p, n) for p, n in sizes.items()}
        self.model = PublishedModel(self.model.version + 1, platforms)
        self._store_version = self.store.version

    def _platform_model(self, platform: str, n: int) -> PlatformModel:
        stats = self.stats.platform(platform)
        alive = self.store.platforms[platform].alive[:n]
        w = self._weights.get(platform, INITIAL_WEIGHTS).copy()
        pop = self.stats.pop_features(platform, n)
        counts = stats.counts[:n]
        src = stats.src_total[:n]
        contribution = np.float32(w[POP_SHORT]) * pop[0] + np.float32(w[POP_LONG]) * pop[1]
        return PlatformModel(
            weights=w,
            n=n,
            pop=pop,
            inv_count=(1.0 / np.sqrt(np.maximum(counts, 1.0))).astype(np.float32),
            src_norm=np.where(src > 0, 1.0 / np.sqrt(np.where(src > 0, src, 1.0)), 1.0).astype(np.float32),
            new=alive & (counts == 0),
            pop_score=contribution.astype(np.float32),
            popular=_best_rows(np.where(alive & (counts > 0), contribution, -np.inf), self.popular),
            cooc_base=stats.cooc.served,
            cooc_recent=stats.cooc.recent,
        )

    @property
    def published_version(self) -> int:
        return self.model.version

    @property
    def weights(self) -> dict[str, npt.NDArray[np.float64]]:
        """The live weights per platform (reports and checkpoints)."""
        return self.adagrad.weights


def _best_rows(scores: F32, k: int) -> npt.NDArray[np.int64]:
    finite = np.flatnonzero(np.isfinite(scores) & (scores > 0))
    if len(finite) == 0 or k <= 0:
        return np.zeros(0, np.int64)
    if len(finite) > k:  # only rows at or above the k-th best can be among the best k (ties kept, in row order)
        values = scores[finite]
        finite = finite[values >= np.partition(values, len(values) - k)[len(values) - k]]
    top = finite[np.argsort(-scores[finite], kind="stable")[:k]]
    return top.astype(np.int64)
