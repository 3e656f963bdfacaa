"""The [policy] config section: defaults, environment, validation, helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusionrec.config import Config, PolicyConfig, load_config
from fusionrec.errors import ConfigError
from fusionrec.policy.exploration import EpsilonGreedy, make_policy


def test_defaults_are_gentle_epsilon_greedy() -> None:
    cfg = load_config(env={})
    assert cfg.policy == PolicyConfig()
    assert cfg.policy.name == "epsilon_greedy" and cfg.policy.explore_share == 0.05
    assert cfg.policy.protected_slots == 5 and cfg.policy.mmr_lambda == 1.0 and cfg.policy.novelty_weight == 0.0
    assert cfg.policy.variant_list() == ()
    policy = make_policy(cfg.policy.name, cfg.policy.params(), ignore_unknown=True)
    assert policy == EpsilonGreedy(explore_share=0.05, protected_slots=5, seed=0)


def test_environment_and_file(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('platforms = ["shop", "news"]\n[policy]\nname = "ucb"\nucb_c = 0.2\n')
    cfg = load_config(
        path,
        env={
            "FUSIONREC_POLICY_PLATFORMS": "news:none",
            "FUSIONREC_POLICY_VARIANTS": "c:none:0.5,x:thompson:0.5:sigma=0.1",
            "FUSIONREC_POLICY_SEED": "12345678901234567",
        },
    )
    assert cfg.policy.ucb_c == 0.2
    assert cfg.policy.policy_for("shop") == "ucb" and cfg.policy.policy_for("news") == "none"
    assert [v.name for v in cfg.policy.variant_list()] == ["c", "x"]
    thompson = make_policy("thompson", cfg.policy.params(), ignore_unknown=True)
    assert thompson.seed == 12345678901234567  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "env, words",
    [
        ({"FUSIONREC_POLICY_NAME": "greedy"}, ["policy.name", "greedy", "epsilon_greedy"]),
        ({"FUSIONREC_POLICY_EXPLORE_SHARE": "1.5"}, ["policy.explore_share"]),
        ({"FUSIONREC_POLICY_EXPLORE_SHARE": "nan"}, ["policy.explore_share"]),
        ({"FUSIONREC_POLICY_MMR_LAMBDA": "-0.1"}, ["policy.mmr_lambda"]),
        ({"FUSIONREC_POLICY_PROTECTED_SLOTS": "-1"}, ["policy.protected_slots"]),
        ({"FUSIONREC_POLICY_UCB_C": "inf"}, ["policy.ucb_c"]),
        ({"FUSIONREC_POLICY_NOVELTY_WEIGHT": "-1"}, ["policy.novelty_weight"]),
        ({"FUSIONREC_POLICY_CANDIDATES": "0"}, ["policy.candidates"]),
        ({"FUSIONREC_POLICY_PLATFORMS": "movies:bandit"}, ["movies", "bandit"]),
        ({"FUSIONREC_POLICY_PLATFORMS": "movies"}, ["platform:policy"]),
        ({"FUSIONREC_POLICY_PLATFORMS": "shop:none"}, ["shop", "not in platforms"]),
        ({"FUSIONREC_POLICY_PLATFORMS": "movies:none,movies:ucb"}, ["twice"]),
        ({"FUSIONREC_POLICY_VARIANTS": "a:none:0.5,b:ucb:0.4"}, ["sum to 1"]),
        ({"FUSIONREC_POLICY_VARIANTS": "a:none:0.5,b:ucb:0.5:ucb_c=-1"}, ["ucb_c"]),
    ],
)
def test_bad_policy_settings(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    for word in words:
        assert word in str(info.value)


def test_policy_does_not_change_the_model_digest() -> None:
    """The digest guards checkpoint compatibility; the policy changes no learned state."""
    assert Config(policy=PolicyConfig(name="none")).digest() == Config().digest()


def test_default_event_weights_order_view_click_like_purchase_top_rating() -> None:
    from fusionrec.config import DEFAULT_EVENT_WEIGHTS as W
    from fusionrec.fusion import event_weight

    def w(kind: str, value: float | None = None) -> float:
        return event_weight(kind, value, W)

    assert w("view") < w("click") < w("like") < w("purchase") < w("rating", 5.0)
    assert w("rating", 1.0) < 0 < w("rating", 3.0) < w("rating", 4.0) < w("rating", 5.0)
