"""The README documents what the code does: every setting, the two commands, the CLI."""

from __future__ import annotations

from pathlib import Path

from fusionrec.config import reference
from stream.cli import parser

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


def test_every_setting_is_documented_as_the_code_defines_it() -> None:
    rows = [row for row in reference().splitlines()[2:]]
    missing = [row for row in rows if row not in README]
    assert not missing, "README configuration table is out of date (paste `fusionrec config --reference`):\n" + "\n".join(missing)


def test_quick_start_is_the_two_make_commands() -> None:
    assert "make demo" in README and "make test" in README


def test_every_cli_command_is_documented() -> None:
    sub = next(a for a in parser()._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"fusionrec {name}" in README, name
