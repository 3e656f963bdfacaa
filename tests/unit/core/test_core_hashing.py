"""Stable 64-bit hashes and counter-based draws (``fusionrec.hashing``): the same on every machine and
run, and draws of the right shape, range and distribution, each a function of its (key, counter) only."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from fusionrec.hashing import combine, mix64, normal, stable_hash, stable_hashes, uniform

MASK = (1 << 64) - 1


def splitmix64_finaliser(x: int) -> int:
    """The reference: splitmix64's output function, in Python integers."""
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


# -------------------------------------------------------------------------------------- hashes


def test_stable_hash_is_the_64_bit_blake2b_of_the_utf8_text() -> None:
    for text in ("", "item-1", "personne/é", "🙂" * 40):
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        assert stable_hash(text) == int.from_bytes(digest, "little")
        assert 0 <= stable_hash(text) <= MASK


def test_stable_hash_never_changes() -> None:
    """Stored person states hold these hashes: a different function would orphan every one of them."""
    assert stable_hash("item-1") == 0x74A8B5AD5A9DEBE4
    assert stable_hash("s0") == 0xC98D55495448C1B3
    assert stable_hash("") == 0xB4B2797457A0A6E4


def test_stable_hash_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = "from fusionrec.hashing import stable_hash; print(stable_hash('item-1'), stable_hash('p/é'))"
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.add(tuple(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()))
    assert outs == {(str(stable_hash("item-1")), str(stable_hash("p/é")))}


def test_stable_hashes_is_stable_hash_per_element() -> None:
    texts = [f"i{n}" for n in range(50)] + ["i3"]
    got = stable_hashes(texts)
    assert got.dtype == np.uint64 and got.shape == (51,)
    assert got.tolist() == [stable_hash(t) for t in texts]
    assert stable_hashes([]).shape == (0,) and stable_hashes([]).dtype == np.uint64


def test_distinct_texts_get_distinct_hashes() -> None:
    texts = [f"item-{n}" for n in range(20000)]
    assert len(set(stable_hashes(texts).tolist())) == len(texts)


# -------------------------------------------------------------------------------------- mixing


def test_mix64_is_splitmix64s_finaliser_modulo_2_to_the_64() -> None:
    xs = [0, 1, 2, 0x9E3779B97F4A7C15, MASK, MASK - 1, 1 << 63, 123456789012345678]
    got = mix64(np.array(xs, np.uint64))
    assert got.dtype == np.uint64
    assert got.tolist() == [splitmix64_finaliser(x) for x in xs]


def test_mix64_scatters_neighbouring_inputs_without_collisions() -> None:
    out = mix64(np.arange(100_000, dtype=np.uint64))
    assert len(np.unique(out)) == 100_000  # a bijection
    bits = np.unpackbits(out.view(np.uint8)).reshape(-1, 64).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 0.01), bits  # every output bit is a fair coin over consecutive inputs


def test_combine_depends_on_every_part_and_on_their_order() -> None:
    a, b, c = (np.uint64(stable_hash(t)) for t in ("seed", "person", "event"))
    key = combine(a, b, c)
    assert key.dtype == np.uint64
    assert int(key) == int(combine(a, b, c))  # a pure function
    assert len({int(combine(*parts)) for parts in ((a, b, c), (a, c, b), (b, a, c), (c, b, a))}) == 4
    assert int(combine(a, b)) != int(combine(a, b, np.uint64(0)))  # one more part, even zero, is another key
    # the draw key of ("ab", "c") is not that of ("a", "bc"): fields are hashed one by one
    assert int(combine(0, stable_hash("ab"), stable_hash("c"))) != int(combine(0, stable_hash("a"), stable_hash("bc")))


def test_combine_broadcasts_over_arrays_like_one_call_per_element() -> None:
    persons = stable_hashes([f"p{n}" for n in range(20)])
    events = stable_hashes([f"e{n}" for n in range(20)])
    batch = combine(np.uint64(7), persons, events)
    assert batch.shape == (20,)
    assert batch.tolist() == [int(combine(np.uint64(7), p, e)) for p, e in zip(persons, events)]


# -------------------------------------------------------------------------------------- draws


KEYS = mix64(np.arange(1000, dtype=np.uint64))  # keys as draw_key makes them
COUNTERS = np.arange(200, dtype=np.uint64)


def test_uniform_has_the_shape_and_range_and_53_bit_resolution() -> None:
    u = uniform(KEYS, COUNTERS)
    assert u.shape == (1000, 200) and u.dtype == np.float64
    assert u.min() >= 0.0 and u.max() < 1.0
    assert np.all(u * 2.0**53 == np.floor(u * 2.0**53))
    assert uniform(KEYS[:0], COUNTERS).shape == (0, 200) and uniform(KEYS, COUNTERS[:0]).shape == (1000, 0)


def test_uniform_draws_are_a_function_of_their_key_and_counter_only() -> None:
    u = uniform(KEYS, COUNTERS)
    for i, j in ((0, 0), (3, 17), (999, 199), (500, 3)):
        assert uniform(KEYS[i : i + 1], COUNTERS[j : j + 1])[0, 0] == u[i, j]
    # the same key in another batch, the counters in another order: the same draws
    assert uniform(KEYS[[7, 3]], COUNTERS[::-1])[1].tolist() == u[3, ::-1].tolist()


def test_uniform_draws_are_uniform_and_uncorrelated() -> None:
    u = uniform(KEYS, COUNTERS)  # 200,000 draws (deterministic: these bounds are 7+ standard errors)
    assert abs(u.mean() - 0.5) < 0.005
    counts = np.histogram(u, bins=10, range=(0.0, 1.0))[0]
    assert np.all(np.abs(counts - 20_000) < 1000), counts
    # neighbouring counters of a key, and neighbouring keys, are not correlated
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.02


def test_normal_draws_are_standard_normal() -> None:
    z = normal(KEYS, COUNTERS)
    assert z.shape == (1000, 200) and z.dtype == np.float64 and np.isfinite(z).all()
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02
    assert abs(np.mean(np.abs(z) < 1.959964) - 0.95) < 0.005
    assert abs(np.mean(z > 0) - 0.5) < 0.005
    for i, j in ((0, 0), (3, 17), (999, 199)):
        assert normal(KEYS[i : i + 1], COUNTERS[j : j + 1])[0, 0] == z[i, j]


@pytest.mark.parametrize("draw", [uniform, normal])
def test_another_key_gives_other_draws(draw: object) -> None:
    a = draw(np.array([stable_hash("p1")], np.uint64), COUNTERS)  # type: ignore[operator]
    b = draw(np.array([stable_hash("p2")], np.uint64), COUNTERS)  # type: ignore[operator]
    assert np.mean(a == b) == 0.0
