"""The one configuration object: defaults, then a TOML file, then the environment.

Each setting is a dataclass field whose metadata names its environment variable and documents it;
``reference()`` renders that documentation (``fusionrec config --reference``), so the docs cannot drift
from the code.  Environment variables win over the file, the file over the defaults.

    >>> cfg = load_config(env={"FUSIONREC_PLATFORMS": "shop,video", "FUSIONREC_TOP_K": "5"})
    >>> cfg.platforms, cfg.worker.top_k
    (('shop', 'video'), 5)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fusionrec.errors import ConfigError

__all__ = [
    "Config",
    "KafkaConfig",
    "WorkerConfig",
    "ModelConfig",
    "LimitsConfig",
    "PolicyConfig",
    "load_config",
    "redacted",
    "reference",
    "REDACTED",
]

REDACTED = "<redacted>"
"""What a secret setting reads as in every output (``fusionrec config``, logs, reports)."""


def setting(default: Any, env: str, doc: str, *, secret: bool = False, **kw: Any) -> Any:
    """A documented field bound to an environment variable.

    A ``secret`` one is left out of ``repr`` and reads as :data:`REDACTED` in :func:`redacted`.
    """
    metadata: dict[str, Any] = {"env": env, "doc": doc}
    if secret:
        metadata["secret"] = True
        kw.setdefault("repr", False)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 0.5,
    "click": 1.0,
    "like": 2.0,
    "purchase": 3.0,
    "review": 3.0,
    "rating": 4.0,  # multiplied by (stars - 2.5) / 2.5: 5 stars weigh 4 (above a purchase), 1 star pushes away
}
"""view < click < like < purchase < rating by its value (see ``fusion.event_weight``)."""


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = setting(
        "127.0.0.1:9092", "FUSIONREC_KAFKA_BOOTSTRAP", "Kafka bootstrap servers (host:port,...)."
    )
    security_protocol: str = setting(
        "PLAINTEXT", "FUSIONREC_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: str = setting("", "FUSIONREC_KAFKA_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    sasl_username: str = setting("", "FUSIONREC_KAFKA_SASL_USERNAME", "SASL user name.")
    sasl_password: str = setting("", "FUSIONREC_KAFKA_SASL_PASSWORD", "SASL password.", secret=True)
    ssl_cafile: str = setting("", "FUSIONREC_KAFKA_SSL_CAFILE", "CA bundle used to verify the brokers.")
    topic_prefix: str = setting("fusionrec.", "FUSIONREC_TOPIC_PREFIX", "Prefix of every topic fusionrec uses.")
    partitions: int = setting(4, "FUSIONREC_PARTITIONS", "Partitions of the topics fusionrec creates.")
    replication_factor: int = setting(
        1, "FUSIONREC_REPLICATION_FACTOR", "Replication factor of the topics fusionrec creates."
    )

    def events_topic(self, platform: str) -> str:
        return f"{self.topic_prefix}events.{platform}"

    @property
    def items_topic(self) -> str:
        return f"{self.topic_prefix}items"

    @property
    def identity_topic(self) -> str:
        return f"{self.topic_prefix}identity"

    @property
    def recs_topic(self) -> str:
        return f"{self.topic_prefix}recs"

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_prefix}dlq"

    @property
    def by_person_topic(self) -> str:
        """Internal topic: valid events re-keyed by person id (co-partitioned with person state)."""
        return f"{self.topic_prefix}by-person"


@dataclass(frozen=True)
class WorkerConfig:
    app_id: str = setting("fusionrec", "FUSIONREC_APP_ID", "Consumer group and app id (names the person-state changelog).")
    top_k: int = setting(10, "FUSIONREC_TOP_K", "Recommendations per message.")
    batch_size: int = setting(512, "FUSIONREC_BATCH_SIZE", "Largest micro-batch taken from the stream.")
    batch_window_s: float = setting(
        0.05, "FUSIONREC_BATCH_WINDOW_S", "Longest wait to fill a micro-batch (seconds)."
    )
    web_host: str = setting("127.0.0.1", "FUSIONREC_WEB_HOST", "Address the worker's HTTP endpoints bind.")
    web_port: int = setting(6066, "FUSIONREC_WEB_PORT", "Port of the worker's HTTP endpoints.")
    data_dir: str = setting(
        "~/.cache/fusionrec/worker", "FUSIONREC_DATA_DIR", "Worker state directory (checkpoints, person-state snapshots)."
    )
    session_timeout_s: float = setting(
        10.0,
        "FUSIONREC_SESSION_TIMEOUT_S",
        "Consumer group session timeout: how soon the partitions of a crashed worker move on.",
    )
    checkpoint_dir: str = setting(
        "", "FUSIONREC_CHECKPOINT_DIR", "Where checkpoints go; empty = <data_dir>/checkpoints."
    )
    checkpoint_every_events: int = setting(
        100_000, "FUSIONREC_CHECKPOINT_EVERY_EVENTS", "Write a checkpoint after this many events..."
    )
    checkpoint_every_s: float = setting(60.0, "FUSIONREC_CHECKPOINT_EVERY_S", "...or after this many seconds.")
    checkpoint_keep: int = setting(3, "FUSIONREC_CHECKPOINT_KEEP", "Checkpoints kept (older ones are deleted).")
    state_snapshot_every_s: float = setting(
        300.0,
        "FUSIONREC_STATE_SNAPSHOT_EVERY_S",
        "Local snapshots of the person state (with a checkpoint, at most this often, and on a clean "
        "shutdown): a restart reads the changelog only from there.",
    )
    catalog_wait_s: float = setting(
        5.0,
        "FUSIONREC_CATALOG_WAIT_S",
        "How long an event naming a not-yet-seen item waits for the item catalog to catch up.",
    )


@dataclass(frozen=True)
class ModelConfig:
    encoder_dir: str = setting(
        "", "FUSIONREC_ENCODER_DIR", "Hugging Face model directory; empty = bundled all-MiniLM-L6-v2."
    )
    device: str = setting("auto", "FUSIONREC_DEVICE", "auto, cpu or cuda.")
    index_threads: int = setting(
        1,
        "FUSIONREC_INDEX_THREADS",
        "OpenMP threads of the FAISS CPU search (0 = FAISS default); one is fastest on small machines. "
        "The encoder's torch shares that runtime, so it gets the same number on the CPU.",
    )
    vector_cache_dir: str = setting(
        "~/.cache/fusionrec/vectors",
        "FUSIONREC_VECTOR_CACHE_DIR",
        "On-disk cache of item vectors keyed by model and text; empty = no cache.",
    )
    sequence_model: str = setting(
        "",
        "FUSIONREC_SEQUENCE_MODEL",
        "A trained sequence model file (`fusionrec train-sequence`) the ranker serves as its seq feature; "
        "empty = none (the feature stays 0).",
    )
    sequence_model_check_s: float = setting(
        30.0,
        "FUSIONREC_SEQUENCE_MODEL_CHECK_S",
        "How often a worker looks at `model.sequence_model` and serves the file again when a newer one "
        "replaced it (a trainer writes a new one in place: `train-sequence --out` renames it over the old); "
        "0 = never.",
    )
    sequence_finetune_every_s: float = setting(
        0.0,
        "FUSIONREC_SEQUENCE_FINETUNE_EVERY_S",
        "How often a worker fine-tunes the served sequence model on the journeys of the people it saw since "
        "the last round, in a background thread on `model.device` (the GPU when there is one); the result is "
        "served only when it beats the served weights on those people's latest items, and is then written "
        "over `model.sequence_model` and into the worker's checkpoints; 0 = never (the default: on a host "
        "without a GPU the training takes cores from the hot path).",
    )
    sequence_finetune_people: int = setting(
        20_000,
        "FUSIONREC_SEQUENCE_FINETUNE_PEOPLE",
        "The most recent people whose journeys one fine-tuning round trains on (the oldest are dropped).",
    )
    sequence_finetune_min_people: int = setting(
        500, "FUSIONREC_SEQUENCE_FINETUNE_MIN_PEOPLE", "A round is skipped until this many people were seen."
    )
    sequence_finetune_epochs: int = setting(
        2, "FUSIONREC_SEQUENCE_FINETUNE_EPOCHS", "Epochs of one fine-tuning round (the best one on validation is kept)."
    )
    sequence_finetune_max_s: float = setting(
        120.0, "FUSIONREC_SEQUENCE_FINETUNE_MAX_S", "Training seconds of one round at most."
    )
    half_life_days: float = setting(
        30.0, "FUSIONREC_HALF_LIFE_DAYS", "Half-life of a past event's weight in a person's profile."
    )
    event_weights: dict[str, float] = setting(
        DEFAULT_EVENT_WEIGHTS, "FUSIONREC_EVENT_WEIGHTS", "Weight of each event type (JSON object)."
    )
    platform_weights: dict[str, float] = setting(
        {}, "FUSIONREC_PLATFORM_WEIGHTS", "Weight of each source platform in the fused vector (JSON)."
    )
    same_platform_boost: float = setting(
        2.0,
        "FUSIONREC_SAME_PLATFORM_BOOST",
        "Extra weight of the target platform's own profile when fusing for that platform.",
    )
    max_consumed: int = setting(
        1000, "FUSIONREC_MAX_CONSUMED", "Consumed items remembered per person (never re-recommended)."
    )
    max_recent_events: int = setting(
        64,
        "FUSIONREC_MAX_RECENT_EVENTS",
        "Recent event ids remembered per person (the duplicate check; replays after a crash reach back "
        "one commit interval, well within it).",
    )
    learn_publish_every: int = setting(
        256,
        "FUSIONREC_LEARN_PUBLISH_EVERY",
        "Learned events between two publications of the online-learned model (weights, co-occurrence, "
        "popularity) to the ranker; a batch is always ranked with one published model.",
    )
    train_every: int = setting(
        2, "FUSIONREC_TRAIN_EVERY", "Every n-th positive event is a training example of the learned weights."
    )
    train_max_per_batch: int = setting(
        32,
        "FUSIONREC_TRAIN_MAX_PER_BATCH",
        "At most this many training examples per micro-batch (the evaluator's batches of 64 never reach it).",
    )
    cooc_neighbours: int = setting(
        200,
        "FUSIONREC_COOC_NEIGHBOURS",
        "Co-occurring items per item the ranker reads (its strongest); 0 = all.",
    )
    text_candidates: int = setting(
        50, "FUSIONREC_TEXT_CANDIDATES", "Candidates per request from the item index (text query)."
    )
    cooc_candidates: int = setting(
        25, "FUSIONREC_COOC_CANDIDATES", "Candidates per request from co-occurrence with the person's recent items."
    )
    popular_candidates: int = setting(
        10, "FUSIONREC_POPULAR_CANDIDATES", "Candidates from the most popular items (shared by every request)."
    )
    index_exact_max: int = setting(
        20000,
        "FUSIONREC_INDEX_EXACT_MAX",
        "Items of a platform up to which the candidate index searches exactly; an IVF index above.",
    )
    index_nprobe: int = setting(16, "FUSIONREC_INDEX_NPROBE", "Lists an IVF search visits.")
    exact_precision: str = setting(
        "auto",
        "FUSIONREC_EXACT_PRECISION",
        "auto, float32, bfloat16 or int8: the precision of the exact search's product with the old items; "
        "bfloat16 is about twice as fast alone as float32 on a CPU with AVX512-BF16 or AMX, int8 (one scale "
        "per item and per request, int32 sums) twice as fast again on a CPU with VNNI or AMX; auto = int8 "
        "where the CPU has int8 dot-product instructions, else bfloat16 where it has bfloat16 ones, else float32.",
    )


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int = setting(65536, "FUSIONREC_MAX_MESSAGE_BYTES", "Largest accepted message.")
    max_field_chars: int = setting(256, "FUSIONREC_MAX_FIELD_CHARS", "Longest id, platform or type string.")
    max_text_chars: int = setting(20000, "FUSIONREC_MAX_TEXT_CHARS", "Longest item title + text.")
    max_future_s: float = setting(
        300.0, "FUSIONREC_MAX_FUTURE_S", "Events stamped further than this in the future are rejected."
    )
    allowed_lateness_s: float = setting(
        86400.0,
        "FUSIONREC_ALLOWED_LATENESS_S",
        "An event older than the person's newest by more than this is rejected as out of order.",
    )


@dataclass(frozen=True)
class PolicyConfig:
    """How the final top-K is chosen from the scored candidates (``fusionrec.policy``).

    The defaults explore gently: ε-greedy with ε = 0.05 on the slots after the fifth only, so at most
    5 % of the DCG mass of slots 6..K is put at risk (NDCG stays well within 5 % of pure
    exploitation) while every list has a chance to show an item from beyond the top K, which raises
    catalog coverage.  MMR and the novelty penalty are off by default (λ = 1, w = 0).
    """

    name: str = setting(
        "epsilon_greedy", "FUSIONREC_POLICY_NAME", "Exploration policy: none, epsilon_greedy, thompson or ucb."
    )
    platform_policies: str = setting(
        "",
        "FUSIONREC_POLICY_PLATFORMS",
        "Per-platform policy override, platform:policy,... (e.g. shop:ucb,news:none).",
    )
    explore_share: float = setting(
        0.05, "FUSIONREC_POLICY_EXPLORE_SHARE", "epsilon_greedy: chance that an unprotected slot explores."
    )
    protected_slots: int = setting(
        5, "FUSIONREC_POLICY_PROTECTED_SLOTS", "epsilon_greedy: leading slots that never explore."
    )
    seed: int = setting(
        0, "FUSIONREC_POLICY_SEED", "Seed of the exploration draws (hashed with the person and event ids)."
    )
    thompson_sigma: float = setting(
        0.05,
        "FUSIONREC_POLICY_THOMPSON_SIGMA",
        "thompson: noise scale of an item never interacted with (shrinks as 1/sqrt(1+n)).",
    )
    ucb_c: float = setting(0.05, "FUSIONREC_POLICY_UCB_C", "ucb: weight of the optimism bonus.")
    mmr_lambda: float = setting(
        1.0, "FUSIONREC_POLICY_MMR_LAMBDA", "MMR re-rank: relevance vs diversity in [0, 1]; 1 = relevance only."
    )
    novelty_weight: float = setting(
        0.0, "FUSIONREC_POLICY_NOVELTY_WEIGHT", "Re-rank penalty per log(1 + popularity) of an item; 0 = off."
    )
    candidates: int = setting(
        50, "FUSIONREC_POLICY_CANDIDATES", "Candidates scored per request for the policy to choose the top K from."
    )
    new_item_position: int = setting(
        10,
        "FUSIONREC_POLICY_NEW_ITEM_POSITION",
        "Every list shows an item nobody has interacted with yet (the model's best) at this position "
        "(1-based) or above, marked explored; 0 = off.",
    )
    variants: str = setting(
        "",
        "FUSIONREC_POLICY_VARIANTS",
        "A/B variants name:policy:share[:key=value;...], comma-separated, shares sum to 1; "
        "empty = everyone gets the policy above.",
    )
    ab_salt: str = setting(
        "", "FUSIONREC_POLICY_AB_SALT", "Salt of the A/B hash of person ids; a new salt reshuffles everyone."
    )

    def params(self) -> dict[str, float]:
        """The shared policy parameters (each policy takes the ones it knows; see ``make_policy``)."""
        return {
            "explore_share": self.explore_share,
            "protected_slots": self.protected_slots,
            "seed": self.seed,
            "sigma": self.thompson_sigma,
            "ucb_c": self.ucb_c,
        }

    def platform_overrides(self) -> dict[str, str]:
        """``platform_policies`` parsed: platform -> policy name."""
        out: dict[str, str] = {}
        for entry in self.platform_policies.split(","):
            if not entry.strip():
                continue
            platform, sep, name = (s.strip() for s in entry.partition(":"))
            if not sep or not platform or not name:
                raise ConfigError(f"policy.platform_policies: {entry.strip()!r} is not platform:policy")
            if platform in out:
                raise ConfigError(f"policy.platform_policies: platform {platform!r} is named twice")
            out[platform] = name
        return out

    def policy_for(self, platform: str) -> str:
        """The policy name used on ``platform`` (its override, else ``name``)."""
        return self.platform_overrides().get(platform, self.name)

    def variant_list(self) -> tuple[Any, ...]:
        """The parsed A/B variants (``fusionrec.policy.ab.Variant``); empty when no experiment runs."""
        from fusionrec.policy.ab import parse_variants  # lazy: the policy package imports numpy

        return parse_variants(self.variants)


@dataclass(frozen=True)
class Config:
    platforms: tuple[str, ...] = setting(
        ("movies",), "FUSIONREC_PLATFORMS", "Platforms whose events are consumed (comma-separated)."
    )
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        validate(self)

    def digest(self) -> str:
        """A short stable hash of every setting that changes what the model computes."""
        blob = orjson.dumps(
            {"platforms": self.platforms, "model": dataclasses.asdict(self.model)},
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


SECTIONS = {
    "kafka": KafkaConfig,
    "worker": WorkerConfig,
    "model": ModelConfig,
    "limits": LimitsConfig,
    "policy": PolicyConfig,
}


def validate(cfg: Config) -> None:
    if not cfg.platforms:
        raise ConfigError("platforms: at least one platform is required (FUSIONREC_PLATFORMS)")
    for p in cfg.platforms:
        if not p or not all(c.isalnum() or c in "-_" for c in p):
            raise ConfigError(f"platforms: {p!r} is not a valid name (letters, digits, '-', '_')")
        if len(p.encode()) > 255:  # a topic name component, and one byte of length in the state encoding
            raise ConfigError(f"platforms: {p[:40]!r}... is longer than 255 bytes")
    for name, value in {"model.max_consumed": cfg.model.max_consumed, "model.max_recent_events": cfg.model.max_recent_events}.items():
        if not 1 <= value <= 65535:  # stored as 16-bit counts in a person's state
            raise ConfigError(f"{name} must be within 1..65535, got {value}")
    positive = {
        "kafka.partitions": cfg.kafka.partitions,
        "kafka.replication_factor": cfg.kafka.replication_factor,
        "worker.top_k": cfg.worker.top_k,
        "worker.batch_size": cfg.worker.batch_size,
        "model.train_every": cfg.model.train_every,
        "model.train_max_per_batch": cfg.model.train_max_per_batch,
        "model.text_candidates": cfg.model.text_candidates,
        "model.index_nprobe": cfg.model.index_nprobe,
        "model.half_life_days": cfg.model.half_life_days,
        "limits.max_message_bytes": cfg.limits.max_message_bytes,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    tuning = {
        "model.sequence_finetune_people": cfg.model.sequence_finetune_people,
        "model.sequence_finetune_min_people": cfg.model.sequence_finetune_min_people,
        "model.sequence_finetune_epochs": cfg.model.sequence_finetune_epochs,
        "model.sequence_finetune_max_s": cfg.model.sequence_finetune_max_s,
    }
    for name, value in tuning.items():
        if value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    if cfg.model.sequence_finetune_every_s < 0:
        raise ConfigError(f"model.sequence_finetune_every_s must be >= 0, got {cfg.model.sequence_finetune_every_s}")
    if cfg.model.sequence_finetune_every_s > 0 and not cfg.model.sequence_model:
        raise ConfigError("model.sequence_finetune_every_s needs model.sequence_model: the network to start from and to write over")
    if cfg.model.sequence_model_check_s < 0:
        raise ConfigError(f"model.sequence_model_check_s must be >= 0, got {cfg.model.sequence_model_check_s}")
    protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    if cfg.kafka.security_protocol not in protocols:
        raise ConfigError(f"kafka.security_protocol must be one of {protocols}, got {cfg.kafka.security_protocol!r}")
    if cfg.model.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"model.device must be one of auto, cpu, cuda; got {cfg.model.device!r}")
    if cfg.model.exact_precision not in ("auto", "float32", "bfloat16", "int8"):
        raise ConfigError(f"model.exact_precision must be auto, float32, bfloat16 or int8; got {cfg.model.exact_precision!r}")
    validate_policy(cfg.policy, cfg.platforms)


def validate_policy(policy: PolicyConfig, platforms: tuple[str, ...]) -> None:
    """Range checks of ``[policy]``; policy names are checked against the registry of ``fusionrec.policy``."""
    from fusionrec.policy.exploration import POLICY_NAMES, make_policy  # lazy: see PolicyConfig.variant_list

    ranges = {
        "policy.explore_share": (policy.explore_share, 0.0, 1.0),
        "policy.mmr_lambda": (policy.mmr_lambda, 0.0, 1.0),
        "policy.protected_slots": (policy.protected_slots, 0, float("inf")),
        "policy.thompson_sigma": (policy.thompson_sigma, 0.0, float("inf")),
        "policy.ucb_c": (policy.ucb_c, 0.0, float("inf")),
        "policy.novelty_weight": (policy.novelty_weight, 0.0, float("inf")),
        "policy.candidates": (policy.candidates, 1, float("inf")),
        "policy.new_item_position": (policy.new_item_position, 0, float("inf")),
    }
    for name, (value, low, high) in ranges.items():
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{name} must be in [{low}, {high}], got {value}")
    overrides = policy.platform_overrides()
    for platform, name in {"": policy.name, **overrides}.items():
        if name not in POLICY_NAMES:
            where = f"policy.platform_policies[{platform}]" if platform else "policy.name"
            raise ConfigError(f"{where}: unknown policy {name!r}; valid: {', '.join(POLICY_NAMES)}")
        make_policy(name, policy.params(), ignore_unknown=True)
    unknown = sorted(set(overrides) - set(platforms))
    if unknown:
        raise ConfigError(f"policy.platform_policies names platforms {unknown} not in platforms {list(platforms)}")
    policy.variant_list()


def _coerce(raw: Any, f: dataclasses.Field[Any], where: str) -> Any:
    """Turn a file value or an environment string into the field's type."""
    kind = type(f.default) if f.default is not dataclasses.MISSING else type(f.default_factory())  # type: ignore[misc]
    try:
        if kind is tuple:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(s.strip() for s in items if str(s).strip())
        if kind is dict:
            value = orjson.loads(raw) if isinstance(raw, str) else dict(raw)
            return {str(k): float(v) for k, v in value.items()}
        if kind is bool:
            return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
        return kind(raw)
    except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read {raw!r} as {kind.__name__}: {exc}") from exc


def _section_values(cls: type, file_values: Mapping[str, Any], env: Mapping[str, str], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls) if "env" in f.metadata}
    unknown = set(file_values) - known - (set(SECTIONS) if cls is Config else set())
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)}; valid: {sorted(known)}")
    for f in dataclasses.fields(cls):
        if "env" not in f.metadata:
            continue
        if f.name in file_values:
            values[f.name] = _coerce(file_values[f.name], f, f"{where}{f.name}")
        env_name = f.metadata["env"]
        if env_name in env:
            values[f.name] = _coerce(env[env_name], f, env_name)
    return values


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the config from defaults, the TOML file (``FUSIONREC_CONFIG`` if no path), then ``env``."""
    env = os.environ if env is None else env
    path = path or env.get("FUSIONREC_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    top = _section_values(Config, data, env, "")
    sections = {}
    for name, cls in SECTIONS.items():
        section_data = data.get(name, {})
        if not isinstance(section_data, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = cls(**_section_values(cls, section_data, env, f"{name}."))
    return Config(**top, **sections)


def redacted(cfg: Config) -> dict[str, Any]:
    """The config as plain data, safe to print, log or write to a file: every secret setting that is
    set reads :data:`REDACTED` (an unset one stays empty, which tells an operator it is missing).

    Dump a config only through this: ``repr=False`` hides a secret from ``repr`` and nowhere else.
    """
    out = dataclasses.asdict(cfg)
    for section, cls in [("", Config), *SECTIONS.items()]:
        values = out[section] if section else out
        for f in dataclasses.fields(cls):
            if f.metadata.get("secret") and values[f.name]:
                values[f.name] = REDACTED
    return out


def reference() -> str:
    """Markdown table of every setting: file key, environment variable, default, meaning."""
    rows = ["| file key | environment | default | meaning |", "|---|---|---|---|"]
    rows.append("| | `FUSIONREC_CONFIG` | `` | TOML config file read when no `--config` is given. |")
    for section, cls in [("", Config), *SECTIONS.items()]:
        for f in dataclasses.fields(cls):
            if "env" not in f.metadata:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if isinstance(default, (dict, tuple)):
                default = orjson.dumps(default).decode()
            key = f"{section}.{f.name}" if section else f.name
            rows.append(f"| `{key}` | `{f.metadata['env']}` | `{default}` | {f.metadata['doc']} |")
    return "\n".join(rows)
