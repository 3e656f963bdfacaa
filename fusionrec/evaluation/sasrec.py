"""SASRec (Kang & McAuley 2018), the sequential baseline, trained offline with torch on the CPU.

What it follows, and why (the reference implementations are the paper's code and RecBole's):

- **Initialisation**: every weight matrix and embedding N(0, 0.02), biases 0, LayerNorm 1/0, and no
  √d scaling of the item embeddings.  (N(0, 1) embeddings times √64 drowned the position embeddings
  and saturated the softmax from the first step.)
- **Architecture**: item + learned position embeddings (counted back from the last item, as the
  paper's left-padded frame does) → LayerNorm → dropout → ``blocks`` causal
  self-attention blocks (pre-LN, GELU feed-forward of 4·dim) → LayerNorm; an item's score is the dot
  product of the last hidden state with the item's (tied) embedding.
- **Loss**: cross-entropy of the next item at every position, over the whole catalog of the next
  item's platform when it has at most ``full_softmax_max`` items, else over ``negatives`` items
  sampled from a popularity proposal with the logQ correction (Bengio & Senécal 2008; Yi et al. 2019),
  so the sampled loss estimates the full one.
- **Training examples**: every position of every user's sequence; a sequence longer than
  ``max_len + 1`` is cut into windows that overlap by half, each label trained exactly once, with at
  least ``max_len / 2`` items of context.
- **Early stopping**: each user's last item is held out as the validation target (trained on the
  rest, as in the paper); validation NDCG@10 (full ranking over the target's platform, consumed items
  excluded) after every epoch; training stops after ``patience`` epochs without improvement, at
  ``epochs`` epochs, or at the time cap, and **the best epoch's weights are kept** (no retraining on
  the held-out items: that is the paper's protocol, and it halves the cost).  At ranking time the
  sequence fed in includes the held-out item.
- **Budget**: the time cap is ``train_s_per_example`` × training examples (positions), so it scales
  with the data; seconds, epochs, best epoch and best validation NDCG@10 are in ``info()``.
- **Multi-platform sets**: the platform of the item to predict is an input (a platform embedding
  added at every position, the platform of the next item; at ranking time the request's platform),
  and only that platform's items are scored, in training as at ranking.
- **Items absent from training** keep no random vector: after training, their embedding is the
  ridge-regression prediction from their text vector (fitted from the text vectors of the trained
  items to their learned embeddings), so a new item scores like trained items with similar text,
  shrunk towards the mean.  An item with no text vector is ranked below every other item.  They are
  kept out of the training softmax (no gradient ever reaches them).
- **Items through their text** (``item_text``, the UniSRec family's item side; off by default, so
  the baseline stays the paper's SASRec): ``"add"`` represents an item by its ID embedding plus a
  learned adaptor of its frozen text vector, ``"only"`` by the adaptor alone (no ID embedding: every
  item, trained or not, is its text), ``"input_ids"`` the sequence's items as in ``"add"`` and the
  scored items as in ``"only"`` (what the ranker can serve: its scores stay linear in the text
  vector).  The adaptor is UniSRec's parametric whitening, ``(t - b) W``,
  as a mixture of ``text_experts`` of them gated by a softmax over a linear map of ``t``.  The same
  representation feeds the sequence and scores the items (tied, but for ``"input_ids"``); an item
  absent from training gets the adaptor's vector (its ID embedding stays zero), no ridge fit.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from fusionrec.errors import ConfigError
from fusionrec.fusion import SEQUENCE_LENGTH
from fusionrec.evaluation.baselines import Baseline, BaselineRequest, top_items
from fusionrec.items import ItemStore as Catalog
from fusionrec.learner.sequence import SequenceModel

__all__ = ["SASRecConfig", "SASRec", "SASRecBaseline", "network_config", "sequence_config", "training_device"]

log = logging.getLogger(__name__)

INIT_STD = 0.02
RIDGE_LAMBDA = 1.0  # regularisation of the text → embedding map for untrained items (unit text vectors)
VALID_CHUNK = 1024  # users scored at once in validation and ranking
NDCG_K = 10
ITEM_TEXT = ("off", "add", "only", "input_ids")


@dataclass(frozen=True)
class SASRecConfig:
    max_len: int = 50
    dim: int = 64
    blocks: int = 2
    heads: int = 2
    dropout: float = 0.5  # the paper's rate on the sparse Amazon sets (chosen on --split valid)
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 200  # at most; early stopping usually ends sooner
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping
    train_s_per_example: float = 0.05  # time cap: this many seconds per training position
    min_train_s: float = 60.0  # floor of the time cap (tiny sets)
    full_softmax_max: int = 16_384  # a platform with more items trains with the sampled softmax
    negatives: int = 2048  # sampled-softmax negatives per batch and platform (≥ 1,000)
    proposal_power: float = 0.75  # sampled negatives ∝ count^power (logQ-corrected)
    valid_keep_consumed: bool = False  # validation ranks consumed items too (mirror --keep-consumed)
    seed: int = 0
    # torch threads for training (0: every core).  On a machine shared with other jobs, one thread
    # trained 3× faster than two here: OpenMP threads wait for each other whenever one is descheduled
    threads: int = 0
    # "off": ID embeddings; "add": ID + text adaptor; "only": text adaptor; "input_ids": the sequence's
    # items as ID + text adaptor, the scored items as text adaptor alone (untied)
    item_text: str = "off"
    text_experts: int = 1  # whitening adaptors in the mixture (item_text "add" or "only")
    device: str = "auto"  # where it trains: "auto" (the GPU when torch sees one), "cpu", "cuda", "cuda:N"

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        if self.item_text not in ITEM_TEXT:
            raise ConfigError(f"item_text must be one of {', '.join(ITEM_TEXT)}; got {self.item_text!r}")
        if self.text_experts < 1:
            raise ConfigError(f"text_experts must be at least 1; got {self.text_experts}")

    @property
    def ffn(self) -> int:
        return 4 * self.dim


def training_device(name: str) -> torch.device:
    """``"auto"``: the GPU when torch sees one, else the CPU; a named CUDA device must be there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"the sequence network is to train on {name}, but torch sees no GPU here")
    return torch.device(name)


def sequence_config(**overrides: Any) -> SASRecConfig:
    """The network the ranker serves as its ``seq`` feature (``learner.sequence``): text only, the
    state's sequence length, one block (steam, validation split: NDCG@10 of the model with it 0.0312
    with one block, 0.0314 with two, at a third of the serving cost); ``overrides`` on top."""
    return replace(SASRecConfig(item_text="only", max_len=SEQUENCE_LENGTH, blocks=1), **overrides)


def network_config(model: SequenceModel, **overrides: Any) -> SASRecConfig:
    """The network a served model's weights fit (its width, heads, blocks, length and how it reads
    items), to fine-tune it; ``overrides`` set how to train (epochs, dropout, device...)."""
    item_text = "only" if model.id_emb is None else "add" if model.id_out else "input_ids"
    shape = {"dim": model.dim, "heads": model.heads, "blocks": len(model.blocks), "max_len": model.max_len, "item_text": item_text}
    return sequence_config(**{**shape, **overrides})


class FastDropout(nn.Module):
    """Dropout with the keep mask drawn as random bytes (``p`` rounded to 1/256).

    Torch's CPU generator costs about as much per ``bernoulli_`` draw as the rest of a training step
    (half the step time with dropout 0.5); one 64-bit draw gives eight bytes, so this is several
    times cheaper and otherwise the same inverted dropout.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.cut = min(max(round(p * 256), 0), 255)  # bytes below the cut are dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cut == 0:
            return x
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.cut
        return x * keep * (256.0 / (256 - self.cut))


class Block(nn.Module):
    """A pre-LN causal self-attention block: x + drop(attn(LN x)), then x + drop(ffn(LN x))."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.ff1 = nn.Linear(cfg.dim, cfg.ffn)
        self.ff2 = nn.Linear(cfg.ffn, cfg.dim)
        self.drop_attn = FastDropout(cfg.dropout)
        self.drop = FastDropout(cfg.dropout)

    def forward(self, x: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) * (d // self.heads) ** -0.5
        att = self.drop_attn(att.masked_fill(future, float("-inf")).softmax(-1))
        y = (att @ v).transpose(1, 2).reshape(B, L, d)
        x = x + self.drop(self.out(y))
        return x + self.drop(self.ff2(self.drop(nn.functional.gelu(self.ff1(self.norm2(x))))))


class TextAdaptor(nn.Module):
    """A mixture of parametric whitenings, ``Σ_e g_e(t) (t - b_e) W_e`` with ``g = softmax(t G)``:
    frozen text vectors (T, text_dim) → item representations (T, dim)."""

    def __init__(self, text_dim: int, dim: int, experts: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(experts, text_dim))
        self.weight = nn.Parameter(torch.empty(experts, text_dim, dim))
        self.gate = nn.Linear(text_dim, experts, bias=False) if experts > 1 else None
        nn.init.normal_(self.weight, 0.0, INIT_STD)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return (text - self.bias[0]) @ self.weight[0]
        each = torch.einsum("ted,edk->tek", text[:, None, :] - self.bias[None], self.weight)
        return (self.gate(text).softmax(-1)[..., None] * each).sum(1)


class SASRec(nn.Module):
    """The network: (B, L) item indices, right-padded with 0, → (B, L, dim) causal hidden states."""

    def __init__(self, n_items: int, n_platforms: int, cfg: SASRecConfig, text: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0) if cfg.item_text != "only" else None
        self.adaptor: TextAdaptor | None = None
        if cfg.item_text != "off":
            if text is None or text.shape[0] != n_items + 1:
                raise ValueError("item_text needs the (n_items + 1, text_dim) text vectors, row 0 the padding")
            self.register_buffer("text", text, persistent=False)
            self.adaptor = TextAdaptor(text.shape[1], cfg.dim, cfg.text_experts)
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        # the target platform as an input: only where there is a choice of platform
        self.platform = nn.Embedding(n_platforms, cfg.dim) if n_platforms > 1 else None
        self.norm_in = nn.LayerNorm(cfg.dim)
        self.drop = FastDropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.blocks))
        self.norm_out = nn.LayerNorm(cfg.dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.02) weights, zero biases, as the reference implementations (no √d scaling)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, INIT_STD)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.item is not None:
            with torch.no_grad():
                self.item.weight[0].zero_()

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, dim): every item's scoring vector (and its input vector, unless untied)."""
        if self.adaptor is None:
            assert self.item is not None
            return self.item.weight
        table = self.adaptor(self.text)
        return table if self.item is None or self.cfg.item_text == "input_ids" else table + self.item.weight

    def input_table(self, table: torch.Tensor) -> torch.Tensor:
        """The sequence's item vectors from the scoring ones: with ``input_ids``, plus the ID embedding."""
        if self.cfg.item_text == "input_ids":
            assert self.item is not None
            return table + self.item.weight
        return table

    def forward(
        self, seqs: torch.Tensor, next_platform: torch.Tensor | None = None, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``table``: :meth:`item_table`, when the caller computed it already (once per training step)."""
        L = seqs.shape[1]
        # positions count back from the last item, as in the paper's left-padded frame: the query
        # position at ranking time is always position 0, the one every training window trains
        length = (seqs > 0).sum(1, keepdim=True)
        back = (length - 1 - torch.arange(L, device=seqs.device)[None]).clamp(min=0)
        h = self.input_table(self.item_table() if table is None else table)[seqs] + self.pos(back)
        if self.platform is not None and next_platform is not None:
            h = h + self.platform(next_platform)
        h = self.drop(self.norm_in(h))
        # right padding: a real position only ever attends to real positions before it, so the causal
        # mask is enough (padded positions' outputs are never used)
        future = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seqs.device), diagonal=1)
        for block in self.blocks:
            h = block(h, future)
        return self.norm_out(h)


@dataclass
class _Encoded:
    """Users' sequences as vocabulary indices, with what training and validation need."""

    train: list[npt.NDArray[np.int64]]  # per user, all but the validation item
    valid_target: npt.NDArray[np.int64]  # per user (0: the user has no validation target)


@dataclass
class _Windows:
    """Training windows, right-padded: ``items[w, :length[w]]``; labels from ``loss_from[w]`` on."""

    items: npt.NDArray[np.int64]  # (W, max_len + 1)
    length: npt.NDArray[np.int64]
    loss_from: npt.NDArray[np.int64]  # first input position whose next item is a label of this window

    @property
    def examples(self) -> int:
        return int(np.maximum(self.length - 1 - self.loss_from, 0).sum())


def windows(seqs: Sequence[npt.NDArray[np.int64]], max_len: int) -> _Windows:
    """Cut sequences into windows of at most ``max_len + 1`` items (inputs + the last label).

    A long sequence gets windows ending at its end, then every ``max_len // 2`` items earlier; each
    window trains only the labels the next window does not, so every label is trained once, and with
    at least ``max_len // 2`` items of context once the sequence is that long.
    """
    span, stride = max_len + 1, max(max_len // 2, 1)
    rows: list[tuple[npt.NDArray[np.int64], int]] = []
    for s in seqs:
        if len(s) < 2:
            continue
        end = len(s)
        while True:
            start = max(end - span, 0)
            if start == 0:
                rows.append((s[:end], 0))  # the first window trains all its labels
                break
            rows.append((s[start:end], span - 1 - stride))  # its last `stride` labels only
            end -= stride
    items = np.zeros((len(rows), span), np.int64)
    for n, (w, _) in enumerate(rows):
        items[n, : len(w)] = w
    length = np.array([len(w) for w, _ in rows], np.int64)
    loss_from = np.array([f for _, f in rows], np.int64)
    return _Windows(items, length, loss_from)


def batch(win: _Windows, rows: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, next items and the mask of trained labels of some windows, padded to the longest."""
    L = int(win.length[rows].max())
    seqs = torch.from_numpy(win.items[rows, :L])
    labels = seqs[:, 1:]
    # a window's last item is only a label: as an input it would shift the positions (counted back
    # from the last input) of a window shorter than the batch's longest
    inputs = seqs[:, :-1] * (labels > 0)
    pos = torch.arange(L - 1)[None]
    keep = (labels > 0) & (pos >= torch.from_numpy(win.loss_from[rows])[:, None])
    return inputs, labels, keep


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """Train on ``n`` threads (0: every core this process may use; callers run it under ``nice``)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n if n > 0 else len(os.sched_getaffinity(0)))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


class SASRecBaseline(Baseline):
    name = "sasrec"

    def __init__(self, catalog: Catalog, cfg: SASRecConfig | None = None, init: SequenceModel | None = None) -> None:
        """``init``: a served sequence model to fine-tune (its weights are where training starts, and
        they stay unless an epoch beats them on the validation targets); the network's shape must be
        its own."""
        super().__init__(catalog)
        self.cfg = cfg or SASRecConfig()
        self.init = init
        self.device = training_device(self.cfg.device)
        self.platforms: list[str] = sorted(catalog.ids)
        # vocabulary: platform by platform, catalog row order, so a platform is one contiguous slice
        self.start: dict[str, int] = {}
        ids: list[str] = []
        for p in self.platforms:
            self.start[p] = len(ids) + 1
            ids.extend(catalog.ids[p])
        self.vocab = {item: j + 1 for j, item in enumerate(ids)}
        self.plat_of = np.zeros(len(ids) + 1, np.int64)  # vocabulary index -> platform number
        for n, p in enumerate(self.platforms):
            self.plat_of[self.start[p] : self.start[p] + catalog.size(p)] = n
        self.model: SASRec | None = None
        self.table: torch.Tensor | None = None  # item scoring vectors once trained
        self.floor: torch.Tensor | None = None  # items ranked below all others (untrained, no text)
        self.history: dict[str, list[int]] = {}
        self.train_seconds = 0.0
        self.epochs_run = 0
        self.best_epoch = 0
        self.best_valid_ndcg = 0.0
        self.stop_reason = ""
        self.time_cap_s = 0.0
        self.examples = 0
        self.loss_kind: dict[str, str] = {}
        self.valid_curve: list[float] = []
        self.trained = torch.zeros(len(self.plat_of), dtype=torch.bool)  # items some training sequence holds
        self.proposal: dict[str, torch.Tensor] = {}
        self.softmax_rows: dict[str, torch.Tensor] = {}  # per platform: vocabulary indices of trained items
        self.softmax_col = torch.zeros(0, dtype=torch.long)
        self._text: npt.NDArray[np.float32] | None = None

    # --- data ---------------------------------------------------------------------------------------

    def _slice(self, platform: str) -> tuple[int, int]:
        s = self.start[platform]
        return s, s + self.catalog.size(platform)

    def _encode(self, sequences: Sequence[Sequence[str]]) -> _Encoded:
        train, valid = [], []
        for seq in sequences:
            idx = np.array([self.vocab[i] for i in seq if i in self.vocab], np.int64)
            if len(idx) >= 2:  # the last item is the validation target
                train.append(idx[:-1])
                valid.append(int(idx[-1]))
            else:
                train.append(idx)
                valid.append(0)
        return _Encoded(train, np.array(valid, np.int64))

    def info(self) -> dict[str, Any]:
        """What the training did, for the report."""
        return {
            "train_seconds": round(self.train_seconds, 1),
            "epochs": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_valid_ndcg@10": round(self.best_valid_ndcg, 5),
            "stop": self.stop_reason,
            "time_cap_s": round(self.time_cap_s, 1),
            "examples": self.examples,
            "loss": self.loss_kind,
            "valid_curve": self.valid_curve,  # validation ndcg@10 after each epoch
            "config": {k: getattr(self.cfg, k) for k in self.cfg.__dataclass_fields__},
            "device": str(self.device),
        }

    # --- training -----------------------------------------------------------------------------------

    def fit(self, sequences: Sequence[Sequence[str]]) -> float:
        """Train on every user's item sequence (time order; platforms from the catalog); the last item
        of each is the validation target.  Returns the training seconds."""
        with _threads(self.cfg.threads):
            return self._fit(sequences)

    def _fit(self, sequences: Sequence[Sequence[str]]) -> float:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        data = self._encode(sequences)
        win = windows(data.train, cfg.max_len)
        self.examples = win.examples
        counts = np.bincount(np.concatenate([*data.train, np.zeros(1, np.int64)]), minlength=len(self.plat_of))
        counts[0] = 0
        self.trained = torch.from_numpy(counts > 0)
        self.proposal = {p: self._proposal(counts, p).to(self.device) for p in self.platforms}
        self.softmax_col = torch.zeros(len(self.plat_of), dtype=torch.long)  # vocabulary -> softmax column
        for p in self.platforms:
            lo, hi = self._slice(p)
            rows = torch.nonzero(self.trained[lo:hi]).squeeze(1) + lo
            self.softmax_col[rows] = torch.arange(len(rows))
            self.softmax_rows[p] = rows.to(self.device)
        self.softmax_col = self.softmax_col.to(self.device)
        self.loss_kind = {
            p: "full" if self.catalog.size(p) <= cfg.full_softmax_max else f"sampled:{cfg.negatives}+logQ"
            for p in self.platforms
        }
        text = torch.from_numpy(self._text_matrix()) if cfg.item_text != "off" else None
        self.model = SASRec(len(self.plat_of) - 1, len(self.platforms), cfg, text).to(self.device)
        if self.model.item is not None:
            with torch.no_grad():  # items no sequence holds never get a gradient: no random vector either
                self.model.item.weight[(~self.trained).to(self.device)] = 0.0
        if self.init is not None:
            self._warm_start(self.init)
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), fused=True)
        self.time_cap_s = max(cfg.min_train_s, cfg.train_s_per_example * self.examples)
        start = time.perf_counter()
        best_state, since_best = copy.deepcopy(self.model.state_dict()), 0
        self.best_valid_ndcg, self.best_epoch, self.valid_curve = -1.0, 0, []
        if self.init is not None:  # the weights fine-tuning starts from are epoch 0: kept unless beaten
            self.best_valid_ndcg = self._validate(data)
            self.valid_curve.append(round(self.best_valid_ndcg, 5))
            log.info("sasrec epoch 0 (the weights it fine-tunes): validation ndcg@10 %.5f", self.best_valid_ndcg)
        self.stop_reason = "epochs"
        for epoch in range(1, cfg.epochs + 1):
            self.model.train()
            out_of_time = self._epoch(win, opt, rng, start)
            self.epochs_run = epoch
            score = self._validate(data)
            self.valid_curve.append(round(score, 5))
            log.info("sasrec epoch %d: validation ndcg@10 %.5f, %.0fs", epoch, score, time.perf_counter() - start)
            if score > self.best_valid_ndcg:
                self.best_valid_ndcg, self.best_epoch, since_best = score, epoch, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                since_best += 1
            if out_of_time:
                self.stop_reason = "time_cap"
                break
            if since_best >= cfg.patience:
                self.stop_reason = "patience"
                break
        self.model.load_state_dict(best_state)
        self.model.eval()
        self._build_table()
        self.train_seconds = time.perf_counter() - start
        return self.train_seconds

    def _warm_start(self, init: SequenceModel) -> None:
        """Load a served model's weights into the new network: platform embeddings matched by name (a
        platform it did not know starts from zeros), ID embeddings by platform and row (the served rows
        are the catalog's, as a worker reads them; rows added since keep their start); a ConfigError when
        the shapes differ."""
        assert self.model is not None
        arrays = init.aligned(self.platforms).to_arrays()
        arrays.pop("item.weight", None)
        if self.model.item is not None and init.id_emb:
            with torch.no_grad():
                for p, table in init.id_emb.items():
                    if p in self.start and table.shape[1] == self.cfg.dim:
                        rows = min(len(table), self.catalog.size(p))
                        self.model.item.weight[self.start[p] : self.start[p] + rows] = torch.from_numpy(table[:rows]).to(self.device)
        state = self.model.state_dict()
        wrong = sorted(k for k, v in arrays.items() if k not in state or tuple(state[k].shape) != v.shape)
        if wrong:
            raise ConfigError(
                f"the sequence model to fine-tune does not fit this network ({', '.join(wrong[:3])}): train with the "
                "--sequence-param it was trained with (dim, heads, blocks, max_len, item_text)"
            )
        self.model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=False)

    def _proposal(self, counts: npt.NDArray[np.int64], platform: str) -> torch.Tensor:
        """Sampling distribution of negatives over the platform's slice: count^power, trained items only."""
        lo, hi = self._slice(platform)
        q = counts[lo:hi].astype(np.float64) ** self.cfg.proposal_power
        q[counts[lo:hi] == 0] = 0.0
        total = q.sum()
        return torch.from_numpy(q / total if total > 0 else q)

    def _epoch(self, win: _Windows, opt: torch.optim.Optimizer, rng: np.random.Generator, start: float) -> bool:
        """One pass over the windows in length buckets (little padding); True when the time cap hit."""
        assert self.model is not None
        order = np.lexsort((rng.random(len(win.length)), win.length))  # by length, random within a length
        batches = [order[b : b + self.cfg.batch_size] for b in range(0, len(order), self.cfg.batch_size)]
        for bn in rng.permutation(len(batches)):
            inputs, labels, keep = (t.to(self.device) for t in batch(win, batches[bn]))
            table = self.model.item_table()
            h = self.model(inputs, self._platform_of(labels), table)
            loss = self._loss(h[keep], labels[keep], table)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if time.perf_counter() - start > self.time_cap_s:
                return True
        return False

    def _loss(self, hidden: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Mean next-item cross-entropy, each label against its own platform's (trained) items
        (``weight``: the items' representations, :meth:`SASRec.item_table`)."""
        plat = self._platform_of(labels)
        total = hidden.new_zeros(())
        for n, p in enumerate(self.platforms):
            sel = plat == n
            if not bool(sel.any()):
                continue
            h, y = hidden[sel], labels[sel]
            if self.catalog.size(p) <= self.cfg.full_softmax_max:
                # the softmax runs over the trained items only: untrained ones get no gradient at all
                rows = self.softmax_rows[p]
                logits = h @ weight.index_select(0, rows).T
                total = total + nn.functional.cross_entropy(logits, self.softmax_col[y], reduction="sum")
            else:
                lo, hi = self._slice(p)
                total = total + self._sampled_loss(h, y - lo, weight[lo:hi], self.proposal[p])
        return total / len(labels)

    def _sampled_loss(self, h: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Sampled softmax with the logQ correction: every logit minus the log of its expected count in
        the sample, so popular negatives (sampled often) do not dominate; accidental hits are masked."""
        m = self.cfg.negatives
        neg = torch.multinomial(q, m, replacement=True)
        log_expected = torch.log(q * m).to(h.dtype)
        pos_logit = (h * weight[y]).sum(-1, keepdim=True) - log_expected[y][:, None]
        neg_logits = h @ weight[neg].T - log_expected[neg][None]
        neg_logits = neg_logits.masked_fill(neg[None] == y[:, None], float("-inf"))
        logits = torch.cat([pos_logit, neg_logits], dim=1)
        return nn.functional.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long, device=h.device), reduction="sum")

    def _platform_of(self, items: torch.Tensor) -> torch.Tensor:
        """The platform number of each vocabulary index, on the indices' device."""
        return torch.from_numpy(self.plat_of[items.cpu().numpy()]).to(items.device)

    # --- validation and scoring ---------------------------------------------------------------------

    @torch.no_grad()
    def _validate(self, data: _Encoded) -> float:
        """Mean NDCG@10 of every user's held-out item over the item's platform (consumed excluded
        unless ``valid_keep_consumed``); a consumed target counts as a miss, as in the protocols."""
        assert self.model is not None
        self.model.eval()
        self._build_table()
        users = [u for u in range(len(data.train)) if data.valid_target[u] > 0 and len(data.train[u]) > 0]
        if not users:
            return 0.0
        total = 0.0
        for platform, chunk in self._chunks([data.train[u] for u in users], self.plat_of[data.valid_target[users]]):
            lo, _ = self._slice(self.platforms[platform])
            seqs = [data.train[users[i]] for i in chunk]
            scores = self._platform_scores(self._hidden(seqs, platform), platform)
            if not self.cfg.valid_keep_consumed:
                rows = np.concatenate([np.full(len(s), b) for b, s in enumerate(seqs)])
                cols = np.concatenate(seqs) - lo
                own = (cols >= 0) & (cols < scores.shape[1])
                scores[torch.from_numpy(rows[own]).to(self.device), torch.from_numpy(cols[own]).to(self.device)] = float("-inf")
            target = torch.from_numpy(data.valid_target[[users[i] for i in chunk]] - lo).to(self.device)
            t = scores[torch.arange(len(chunk), device=self.device), target]
            rank = (scores > t[:, None]).sum(1).double()
            gain = torch.where(torch.isfinite(t) & (rank < NDCG_K), 1.0 / torch.log2(rank + 2), 0.0)
            total += float(gain.sum())
        return total / len(users)

    def _chunks(
        self, seqs: Sequence[npt.NDArray[np.int64]], platforms: npt.NDArray[np.int64]
    ) -> Iterator[tuple[int, list[int]]]:
        """Positions of ``seqs`` by target platform, by length, in chunks (little padding)."""
        for platform in np.unique(platforms):
            members = np.flatnonzero(platforms == platform)
            members = members[np.argsort([min(len(seqs[i]), self.cfg.max_len) for i in members], kind="stable")]
            for c in range(0, len(members), VALID_CHUNK):
                yield int(platform), [int(i) for i in members[c : c + VALID_CHUNK]]

    def _hidden(self, seqs: Sequence[npt.NDArray[np.int64]], platform: int) -> torch.Tensor:
        """(B, dim) query states: each sequence's last max_len items, asked about ``platform``."""
        assert self.model is not None
        L = max(min(len(s), self.cfg.max_len) for s in seqs)
        x = np.zeros((len(seqs), L), np.int64)
        nxt = np.zeros((len(seqs), L), np.int64)
        last = np.zeros(len(seqs), np.int64)
        for b, s in enumerate(seqs):
            s = s[-L:]
            x[b, : len(s)] = s
            nxt[b, : len(s) - 1] = self.plat_of[s[1:]]  # each position's next item's platform...
            nxt[b, len(s) - 1] = platform  # ...and the asked platform at the query position
            last[b] = len(s) - 1
        hidden = self.model(torch.from_numpy(x).to(self.device), torch.from_numpy(nxt).to(self.device))
        return hidden[torch.arange(len(seqs), device=self.device), torch.from_numpy(last).to(self.device)]

    def _platform_scores(self, hidden: torch.Tensor, platform: int) -> torch.Tensor:
        """(B, items of the platform) scores; untrained items without text just below every other."""
        assert self.table is not None and self.floor is not None
        lo, hi = self._slice(self.platforms[platform])
        scores = hidden @ self.table[lo:hi].T
        floor = self.floor[lo:hi]
        if bool(floor.any()) and bool((~floor).any()):
            scores[:, floor] = (scores[:, ~floor].min(1, keepdim=True).values - 1.0).expand(-1, int(floor.sum()))
        return scores

    def _build_table(self) -> None:
        """Scoring vectors: the learned embeddings of trained items; for the others the ridge
        prediction from their text vector (see the module docstring), or the floor without one."""
        assert self.model is not None
        emb = self.model.item_table().detach().clone()
        text = self._text_matrix()
        has_text = torch.from_numpy(np.linalg.norm(text, axis=1) > 0).to(self.device)
        trained = self.trained.to(self.device)
        fit_rows = trained & has_text
        untrained = ~trained
        untrained[0] = False
        # with an adaptor, an untrained item's vector is already its text's (its ID embedding is zero)
        if self.model.adaptor is None and bool(fit_rows.any()) and bool((untrained & has_text).any()):
            x = torch.from_numpy(text).to(self.device)[fit_rows].double()
            y = emb[fit_rows].double()
            xm, ym = x.mean(0), y.mean(0)
            xc = x - xm
            a = xc.T @ xc + RIDGE_LAMBDA * torch.eye(x.shape[1], dtype=torch.float64, device=self.device)
            w = torch.linalg.solve(a, xc.T @ (y - ym))
            rows = untrained & has_text
            emb[rows] = ((torch.from_numpy(text).to(self.device)[rows].double() - xm) @ w + ym).to(emb.dtype)
        floor = untrained & ~has_text
        emb[floor] = 0.0
        self.table, self.floor = emb, floor

    def _text_matrix(self) -> npt.NDArray[np.float32]:
        if self._text is None:
            parts = [np.asarray(self.catalog.mats[p][: self.catalog.size(p)], np.float32) for p in self.platforms]
            dim = parts[0].shape[1] if parts else 1
            self._text = np.concatenate([np.zeros((1, dim), np.float32), *parts])
        return self._text

    def serving_model(self) -> SequenceModel:
        """The trained network as the ranker serves it (``learner.sequence``; needs ``item_text`` "only",
        "input_ids" or "add", and one expert: the serving side reads items by their text, plus their ID
        embeddings where the network has them)."""
        if self.model is None:
            raise RuntimeError("SASRecBaseline.serving_model() before fit()")
        arrays = {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        with_ids = self.cfg.item_text in ("input_ids", "add")
        id_rows = {p: (self.start[p], self.catalog.size(p)) for p in self.platforms} if with_ids else None
        version = 0 if self.init is None else self.init.version + 1
        return SequenceModel.from_arrays(
            arrays, self.platforms, heads=self.cfg.heads, version=version, id_rows=id_rows, id_out=self.cfg.item_text == "add"
        )

    # --- the Baseline interface ---------------------------------------------------------------------

    def learn(self, person: str, item_id: str, ts: float, positive: bool) -> None:
        j = self.vocab.get(item_id)
        if j is not None and positive:
            self.history.setdefault(person, []).append(j)

    @torch.no_grad()
    def rank(self, requests: Sequence[BaselineRequest], k: int) -> list[list[str]]:
        if self.model is None:
            raise RuntimeError("SASRecBaseline.rank() before fit()")
        out: list[list[str]] = [[] for _ in requests]
        live = [n for n, r in enumerate(requests) if self.history.get(r.person) and r.platform in self.start]
        if not live:
            return out
        seqs = [np.asarray(self.history[requests[n].person], np.int64) for n in live]
        plats = np.array([self.platforms.index(requests[n].platform) for n in live], np.int64)
        for platform, chunk in self._chunks(seqs, plats):
            scores = self._platform_scores(self._hidden([seqs[i] for i in chunk], platform), platform).cpu().numpy()
            for row, i in zip(scores, chunk):
                r = requests[live[i]]
                out[live[i]] = top_items(row.astype(np.float64), self.catalog, r.platform, r.consumed, k)
        return out
