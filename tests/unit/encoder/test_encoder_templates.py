"""Item text template: deterministic, compact, bounded."""

from __future__ import annotations

from encoder.templates import TEXT_BUDGET, item_text


def test_all_parts_in_order_with_platform_prefix() -> None:
    out = item_text("Red Lipstick", "Long lasting colour.", "beauty", ["Makeup", "Lips"])
    assert out == "[beauty] Red Lipstick. Makeup, Lips. Long lasting colour."


def test_empty_parts_are_left_out() -> None:
    assert item_text("Red Lipstick") == "Red Lipstick"
    assert item_text("", "only text", "x") == "[x] only text"
    assert item_text("Title.", "", "", [" ", "Lips"]) == "Title. Lips"
    assert item_text("") == ""


def test_text_repeating_the_title_is_dropped() -> None:
    assert item_text("Red Lipstick", "Red Lipstick", "beauty") == "[beauty] Red Lipstick"
    assert item_text("Red Lipstick", "Red Lipstick. Lasts all day") == "Red Lipstick. Lasts all day"


def test_whitespace_is_collapsed() -> None:
    assert item_text(" Red \t Lipstick ", "a\n\nb", " beauty ") == "[beauty] Red Lipstick. a b"


def test_text_is_truncated_to_budget() -> None:
    out = item_text("T", "word " * 2000)
    assert len(out) <= len("T. ") + TEXT_BUDGET
    assert not out.endswith(" ")
    assert len(item_text("T", "x" * 5000, budget=10)) == len("T. ") + 10


def test_deterministic() -> None:
    args = ("Title", "Some text", "arts", ("a", "b"))
    assert item_text(*args) == item_text(*args)
