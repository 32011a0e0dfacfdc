"""The README documents every setting: a new setting without a line there fails here."""

from __future__ import annotations

from pathlib import Path

from sme.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_listed_in_the_readme() -> None:
    names = [f"SME_{name.upper()}" for name in Settings.model_fields]
    missing = [name for name in names if name not in README]
    assert missing == [], f"document these settings in README.md: {missing}"


def test_the_readme_shows_the_two_commands() -> None:
    assert "make run" in README
    assert "make test" in README
