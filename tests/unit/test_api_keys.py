"""API keys must be hard to guess: the gateway refuses to start with a weak admin key, a
user-supplied workspace key is checked where it is added, and settings never print a key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydantic import SecretStr

from sme.cli import main
from sme.errors import ConfigurationError
from sme.gateway.app import create_app
from sme.gateway.auth import add_key, key_problem, load_keys, new_key
from sme.settings import Settings

STRONG = "Xk3-vQ9_mZ2pL7wR4tY8nB1cD6"


@pytest.mark.parametrize(
    "weak",
    ["a", "admin-secret-for-tests", "a" * 64, "ab" * 20, "Password-2024!", "é" * 30, " " * 40],
)
def test_a_weak_admin_key_is_refused_at_start_even_on_a_public_bind(weak: str) -> None:
    exposed = Settings(admin_api_key=SecretStr(weak), http_host="0.0.0.0")  # noqa: S104
    with pytest.raises(ConfigurationError, match="SME_ADMIN_API_KEY is too weak") as refused:
        create_app(exposed)
    assert len(weak) < 8 or weak not in str(refused.value), "the message never repeats the key"


def test_a_strong_admin_key_starts() -> None:
    assert key_problem(STRONG) is None
    assert key_problem(new_key()) is None
    create_app(Settings(admin_api_key=SecretStr(STRONG), http_host="0.0.0.0"))  # noqa: S104


def test_a_user_supplied_workspace_key_is_checked_where_it_is_added(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with pytest.raises(ConfigurationError, match="too weak"):
        add_key(path, "k1", "acme", "short")
    assert not path.exists()
    assert add_key(path, "k1", "acme", STRONG) == STRONG
    with pytest.raises(ConfigurationError, match="in use already"):
        add_key(path, "k2", "acme", STRONG)
    assert [r.id for r in load_keys(path)] == ["k1"]
    assert STRONG not in path.read_text()


def test_the_cli_adds_a_key_from_standard_input_only_when_it_is_strong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    args = ["keys", "create", "--workspace", "acme", "--file", str(path), "--key-stdin"]
    monkeypatch.setattr("sys.stdin", io.StringIO("tooweak\n"))
    assert main([*args, "--id", "weak"]) == 1
    assert "too weak" in capsys.readouterr().err
    assert not path.exists()
    monkeypatch.setattr("sys.stdin", io.StringIO(STRONG + "\n"))
    assert main([*args, "--id", "strong"]) == 0
    assert STRONG not in capsys.readouterr().out, "a supplied key is not echoed"
    assert [r.id for r in load_keys(path)] == ["strong"]


def test_settings_never_show_the_admin_key() -> None:
    settings = Settings(admin_api_key=SecretStr(STRONG))
    for shown in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
    ):
        assert STRONG not in shown
