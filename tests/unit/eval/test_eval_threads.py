"""The offline evaluator's batch stages get every core; the replay runs on the workers' setting."""

from __future__ import annotations

import os

import pytest
import torch

from fusionrec.evaluation.protocol.replay import every_core


@pytest.fixture
def one_thread():
    """Torch as ``build_recommender`` leaves it with the default ``model.index_threads`` (one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_core_gives_torch_every_core_then_the_workers_setting_back(one_thread) -> None:
    with every_core():
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    assert torch.get_num_threads() == 1


def test_every_core_gives_the_setting_back_after_an_error(one_thread) -> None:
    with pytest.raises(RuntimeError), every_core():
        raise RuntimeError("encoding failed")
    assert torch.get_num_threads() == 1
