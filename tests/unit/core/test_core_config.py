"""Configuration: defaults < TOML file < environment, coercion, errors that name the setting, reference, digest."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from fusionrec import config as config_module
from fusionrec.config import (
    DEFAULT_EVENT_WEIGHTS,
    SECTIONS,
    Config,
    KafkaConfig,
    LimitsConfig,
    ModelConfig,
    REDACTED,
    WorkerConfig,
    load_config,
    redacted,
    reference,
)
from fusionrec.errors import ConfigError, RecError


def write(tmp_path: Path, text: str, name: str = "fusionrec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------ precedence


def test_defaults_without_file_or_env() -> None:
    cfg = load_config(env={})
    assert cfg == Config()
    assert cfg.platforms == ("movies",)
    assert cfg.worker.top_k == 10 and cfg.kafka.security_protocol == "PLAINTEXT"
    assert cfg.model.event_weights == DEFAULT_EVENT_WEIGHTS
    assert cfg.limits == LimitsConfig()


def test_default_dicts_are_not_shared() -> None:
    a, b = ModelConfig(), ModelConfig()
    assert a.event_weights == b.event_weights and a.event_weights is not b.event_weights
    assert a.event_weights is not DEFAULT_EVENT_WEIGHTS


TOML = """
platforms = ["shop", "video"]

[worker]
top_k = 7
batch_window_s = 1

[model]
half_life_days = 7
event_weights = { click = 2, view = 0.25 }
platform_weights = { shop = 1.5 }

[kafka]
topic_prefix = "file."
security_protocol = "SSL"
"""


def test_file_overrides_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, TOML), env={})
    assert cfg.platforms == ("shop", "video")
    assert cfg.worker.top_k == 7 and cfg.worker.batch_size == 512  # untouched settings keep defaults
    assert cfg.worker.batch_window_s == 1.0 and isinstance(cfg.worker.batch_window_s, float)
    assert cfg.model.half_life_days == 7.0 and isinstance(cfg.model.half_life_days, float)
    assert cfg.model.event_weights == {"click": 2.0, "view": 0.25}
    assert all(isinstance(v, float) for v in cfg.model.event_weights.values())
    assert cfg.model.platform_weights == {"shop": 1.5}
    assert cfg.kafka.topic_prefix == "file." and cfg.kafka.security_protocol == "SSL"
    assert cfg.kafka.events_topic("shop") == "file.events.shop" and cfg.kafka.dlq_topic == "file.dlq"


def test_env_overrides_file(tmp_path: Path) -> None:
    env = {
        "FUSIONREC_TOP_K": "9",
        "FUSIONREC_PLATFORMS": "music",
        "FUSIONREC_EVENT_WEIGHTS": '{"like": 4}',
        "FUSIONREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    }
    cfg = load_config(write(tmp_path, TOML), env=env)
    assert cfg.worker.top_k == 9 and cfg.platforms == ("music",)
    assert cfg.model.event_weights == {"like": 4.0}  # replaced, not merged
    assert cfg.kafka.security_protocol == "SASL_SSL"
    assert cfg.kafka.topic_prefix == "file." and cfg.model.half_life_days == 7.0  # still from the file


def test_file_named_by_env(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\ntop_k = 3\n")
    assert load_config(env={"FUSIONREC_CONFIG": str(path)}).worker.top_k == 3
    # an explicit path wins over FUSIONREC_CONFIG
    other = write(tmp_path, "[worker]\ntop_k = 4\n", "other.toml")
    assert load_config(other, env={"FUSIONREC_CONFIG": str(path)}).worker.top_k == 4
    # an empty FUSIONREC_CONFIG means no file
    assert load_config(env={"FUSIONREC_CONFIG": ""}) == Config()


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FUSIONREC_CONFIG", raising=False)
    monkeypatch.setenv("FUSIONREC_TOP_K", "12")
    assert load_config().worker.top_k == 12


# ------------------------------------------------------------------------------------- coercion


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("shop", ("shop",)),
        ("shop,video", ("shop", "video")),
        (" shop , video ,, ", ("shop", "video")),
        ("a-b,c_d", ("a-b", "c_d")),
    ],
)
def test_tuple_from_env(raw: str, expected: tuple[str, ...]) -> None:
    assert load_config(env={"FUSIONREC_PLATFORMS": raw}).platforms == expected


def test_scalar_coercion_from_env() -> None:
    cfg = load_config(
        env={
            "FUSIONREC_TOP_K": "5",
            "FUSIONREC_BATCH_WINDOW_S": "1",
            "FUSIONREC_HALF_LIFE_DAYS": "0.5",
            "FUSIONREC_WEB_PORT": "8080",
            "FUSIONREC_PLATFORM_WEIGHTS": '{"shop": 2, "video": "0.5"}',
            "FUSIONREC_KAFKA_BOOTSTRAP": "h1:9092,h2:9092",
        }
    )
    assert cfg.worker.top_k == 5 and type(cfg.worker.top_k) is int
    assert cfg.worker.batch_window_s == 1.0 and type(cfg.worker.batch_window_s) is float
    assert cfg.model.half_life_days == 0.5
    assert cfg.worker.web_port == 8080 and type(cfg.worker.web_port) is int
    assert cfg.model.platform_weights == {"shop": 2.0, "video": 0.5}
    assert cfg.kafka.bootstrap_servers == "h1:9092,h2:9092"


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "env, words",
    [
        ({"FUSIONREC_TOP_K": "-1"}, ["worker.top_k", "> 0"]),
        ({"FUSIONREC_TOP_K": "0"}, ["worker.top_k"]),
        ({"FUSIONREC_TOP_K": "ten"}, ["FUSIONREC_TOP_K", "ten"]),
        ({"FUSIONREC_TOP_K": "2.5"}, ["FUSIONREC_TOP_K"]),
        ({"FUSIONREC_BATCH_SIZE": "-3"}, ["worker.batch_size"]),
        ({"FUSIONREC_PARTITIONS": "0"}, ["kafka.partitions"]),
        ({"FUSIONREC_HALF_LIFE_DAYS": "-2"}, ["model.half_life_days"]),
        ({"FUSIONREC_TRAIN_EVERY": "0"}, ["model.train_every", "> 0"]),
        ({"FUSIONREC_TEXT_CANDIDATES": "0"}, ["model.text_candidates", "> 0"]),
        ({"FUSIONREC_INDEX_NPROBE": "-1"}, ["model.index_nprobe", "> 0"]),
        ({"FUSIONREC_MAX_MESSAGE_BYTES": "0"}, ["limits.max_message_bytes"]),
        ({"FUSIONREC_KAFKA_SECURITY_PROTOCOL": "TLS"}, ["security_protocol", "TLS", "SASL_SSL", "PLAINTEXT"]),
        ({"FUSIONREC_DEVICE": "tpu"}, ["model.device", "tpu", "cuda"]),
        ({"FUSIONREC_EXACT_PRECISION": "float16"}, ["model.exact_precision", "float16", "bfloat16"]),
        ({"FUSIONREC_EVENT_WEIGHTS": "{click: 1}"}, ["FUSIONREC_EVENT_WEIGHTS"]),
        ({"FUSIONREC_EVENT_WEIGHTS": "[1, 2]"}, ["FUSIONREC_EVENT_WEIGHTS"]),
        ({"FUSIONREC_EVENT_WEIGHTS": '{"click": "lots"}'}, ["FUSIONREC_EVENT_WEIGHTS"]),
        ({"FUSIONREC_EVENT_WEIGHTS": '{"click": null}'}, ["FUSIONREC_EVENT_WEIGHTS"]),
        ({"FUSIONREC_PLATFORMS": ""}, ["platforms", "FUSIONREC_PLATFORMS"]),
        ({"FUSIONREC_PLATFORMS": " , "}, ["platforms"]),
        ({"FUSIONREC_PLATFORMS": "shop,my shop"}, ["platforms", "my shop"]),
        ({"FUSIONREC_PLATFORMS": "a/b"}, ["platforms", "a/b"]),
        ({"FUSIONREC_PLATFORMS": "shop," + "x" * 256}, ["platforms", "255 bytes"]),
        ({"FUSIONREC_MAX_CONSUMED": "0"}, ["model.max_consumed", "1..65535"]),
        ({"FUSIONREC_MAX_CONSUMED": "65536"}, ["model.max_consumed", "1..65535"]),
        ({"FUSIONREC_MAX_RECENT_EVENTS": "70000"}, ["model.max_recent_events", "1..65535"]),
    ],
)
def test_bad_env_values_name_the_setting(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RecError)
    for word in words:
        assert word in str(info.value)


def test_unknown_key_in_a_section_lists_the_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[worker]\ntopk = 3\n"), env={})
    message = str(info.value)
    assert "topk" in message
    for f in dataclasses.fields(WorkerConfig):
        assert f.name in message


def test_unknown_top_level_key_lists_the_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="plaforms") as info:
        load_config(write(tmp_path, 'plaforms = ["shop"]\n'), env={})
    assert "platforms" in str(info.value)


@pytest.mark.parametrize("section", ["model", "worker", "kafka", "limits"])
def test_section_name_inside_another_section_is_unknown(tmp_path: Path, section: str) -> None:
    other = "worker" if section != "worker" else "model"
    with pytest.raises(ConfigError, match=other):
        load_config(write(tmp_path, f"[{section}]\n{other} = 1\n"), env={})


@pytest.mark.parametrize(
    "text, words",
    [
        ("[worker]\ntop_k = -5\n", ["worker.top_k", "-5"]),
        ("[worker]\ntop_k = 'many'\n", ["worker.top_k", "many"]),
        ("[kafka]\nsecurity_protocol = 'ssl'\n", ["security_protocol", "'ssl'"]),
        ("[model]\nevent_weights = { click = 'x' }\n", ["model.event_weights"]),
        ("[model]\nevent_weights = [1, 2]\n", ["model.event_weights"]),
        ("platforms = []\n", ["platforms"]),
        ("platforms = [1, 2]\n", ["platforms"]),
        ("worker = 3\n", ["[worker]", "table"]),
        ("[worker\ntop_k = 1\n", ["cannot read config file"]),
    ],
)
def test_bad_file_values_name_the_setting(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    for word in words:
        assert word in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml", env={})


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match="worker.top_k"):
        Config(worker=WorkerConfig(top_k=0))
    with pytest.raises(ConfigError, match="security_protocol"):
        Config(kafka=KafkaConfig(security_protocol="plaintext"))
    with pytest.raises(ConfigError, match="platforms"):
        Config(platforms=())


def test_password_is_not_in_repr() -> None:
    cfg = load_config(env={"FUSIONREC_KAFKA_SASL_PASSWORD": "hunter2"})
    assert cfg.kafka.sasl_password == "hunter2"
    assert "hunter2" not in repr(cfg)


def test_redacted_hides_the_password_and_nothing_else() -> None:
    cfg = load_config(env={"FUSIONREC_KAFKA_SASL_PASSWORD": "hunter2", "FUSIONREC_KAFKA_SASL_USERNAME": "svc"})
    out = redacted(cfg)
    assert "hunter2" not in repr(out) and "hunter2" not in str(cfg)
    assert out["kafka"]["sasl_password"] == REDACTED
    plain = dataclasses.asdict(cfg)
    plain["kafka"]["sasl_password"] = REDACTED
    assert out == plain  # every other setting as it is (the user name is not a secret)
    assert redacted(Config())["kafka"]["sasl_password"] == ""  # unset stays visibly unset


def test_secret_settings_are_marked() -> None:
    """redacted() knows secrets by their field metadata: the password must carry it."""
    secrets = {
        f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls) if f.metadata.get("secret")
    }
    assert secrets == {"kafka.sasl_password"}


# ------------------------------------------------------------------------------------ reference


def all_settings() -> list[tuple[str, dataclasses.Field[object]]]:
    out = []
    for section, cls in [("", Config), *SECTIONS.items()]:
        for f in dataclasses.fields(cls):
            if "env" in f.metadata:
                out.append((f"{section}.{f.name}" if section else f.name, f))
    return out


def test_reference_lists_every_env_var_in_config_py() -> None:
    source = Path(config_module.__file__).read_text()
    names = set(re.findall(r"FUSIONREC_[A-Z0-9_]+", source))
    assert len(names) > 20
    text = reference()
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, f"reference() does not document {missing}"


def test_reference_has_one_row_per_setting() -> None:
    text = reference()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    settings_ = all_settings()
    assert len(settings_) == len({f.metadata["env"] for _, f in settings_})  # env names are unique
    for key, f in settings_:
        matching = [r for r in rows if r.startswith(f"| `{key}` | `{f.metadata['env']}` |")]
        assert len(matching) == 1, key
        assert f.metadata["doc"] in matching[0]
    assert len(rows) >= len(settings_)


def test_every_reference_key_loads_from_a_file(tmp_path: Path) -> None:
    """The file keys the reference prints are the ones load_config accepts (default values round-trip)."""
    for key, f in all_settings():
        section, _, name = key.rpartition(".")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, str):
            value = '"' + default + '"'
        elif isinstance(default, tuple):
            value = "[" + ", ".join(f'"{v}"' for v in default) + "]"
        elif isinstance(default, dict):
            value = "{" + ", ".join(f"{k} = {v}" for k, v in default.items()) + "}"
        else:
            value = repr(default)
        text = (f"[{section}]\n" if section else "") + f"{name} = {value}\n"
        assert load_config(write(tmp_path, text), env={}) == Config(), key


# --------------------------------------------------------------------------------------- digest


def test_digest_is_stable() -> None:
    d = Config().digest()
    assert re.fullmatch(r"[0-9a-f]{16}", d)
    assert load_config(env={}).digest() == d == Config().digest()


def test_digest_ignores_dict_order() -> None:
    reordered = dict(reversed(list(DEFAULT_EVENT_WEIGHTS.items())))
    assert Config(model=ModelConfig(event_weights=reordered)).digest() == Config().digest()


@pytest.mark.parametrize(
    "env",
    [
        {"FUSIONREC_HALF_LIFE_DAYS": "31"},
        {"FUSIONREC_EVENT_WEIGHTS": '{"click": 1.5}'},
        {"FUSIONREC_PLATFORM_WEIGHTS": '{"movies": 2}'},
        {"FUSIONREC_SAME_PLATFORM_BOOST": "3"},
        {"FUSIONREC_MAX_CONSUMED": "10"},
        {"FUSIONREC_ENCODER_DIR": "/models/other"},
        {"FUSIONREC_PLATFORMS": "movies,shop"},
    ],
)
def test_digest_changes_with_model_settings(env: dict[str, str]) -> None:
    assert load_config(env=env).digest() != Config().digest()


@pytest.mark.parametrize(
    "env",
    [
        {"FUSIONREC_TOP_K": "3"},
        {"FUSIONREC_KAFKA_BOOTSTRAP": "elsewhere:9092"},
        {"FUSIONREC_MAX_MESSAGE_BYTES": "100"},
        {"FUSIONREC_WEB_PORT": "1"},
        {"FUSIONREC_KAFKA_SASL_PASSWORD": "s3cr3t", "FUSIONREC_KAFKA_SASL_USERNAME": "fusionrec"},
    ],
)
def test_digest_ignores_operational_settings(env: dict[str, str]) -> None:
    assert load_config(env=env).digest() == Config().digest()


def test_replace_returns_a_new_validated_config() -> None:
    cfg = Config()
    other = cfg.replace(platforms=("a", "b"))
    assert other.platforms == ("a", "b") and cfg.platforms == ("movies",)
    with pytest.raises(ConfigError):
        cfg.replace(platforms=("bad name",))
