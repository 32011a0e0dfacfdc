"""Ingest write keys: `sme keys create --write` stores only the hash, in the write-keys file
(never the API keys file); the gateway reads them at start (a broken file stops it) and takes
the workspace from HTTP Basic credentials (user = write key), refusing anything else with 401."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from sme.cli import main
from sme.errors import ConfigurationError
from sme.gateway.app import create_app
from sme.gateway.auth import load_keys
from sme.gateway.ingest_api import WRITE_KEY_PREFIX, WriteKeys
from sme.settings import Settings


def request_with(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "POST", "path": "/v1/track", "headers": headers})


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_cli_creates_a_write_key_in_the_write_keys_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SME_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SME_WRITE_KEYS_FILE", raising=False)
    assert main(["keys", "create", "--write", "--workspace", "acme", "--id", "cdp"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith(WRITE_KEY_PREFIX)
    path = tmp_path / "write-keys.json"
    assert "SME_WRITE_KEYS_FILE=" in out.err
    assert [(r.id, r.workspace_id) for r in load_keys(path)] == [("cdp", "acme")]
    assert key not in path.read_text()
    assert not (tmp_path / "api-keys.json").exists()

    keys = WriteKeys(Settings(write_keys_file=path))
    assert keys.workspace(request_with(basic(key))) == "acme"
    assert keys.workspace(request_with("basic " + basic(key, "ignored")[6:])) == "acme"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer sme_wk_whatever",
        "Basic",
        "Basic !!!not-base64",
        basic("sme_wk_unknown-key-of-enough-length-000"),
        "Basic " + base64.b64encode(b"\xff\xfe:").decode(),
    ],
)
def test_anything_but_a_known_write_key_is_401(tmp_path: Path, authorization: str | None) -> None:
    path = tmp_path / "write-keys.json"
    assert main(["keys", "create", "--write", "--workspace", "acme", "--id", "cdp",
                 "--file", str(path)]) == 0  # fmt: skip
    keys = WriteKeys(Settings(write_keys_file=path))
    with pytest.raises(HTTPException) as refused:
        keys.workspace(request_with(authorization))
    assert refused.value.status_code == 401
    assert (refused.value.headers or {}).get("WWW-Authenticate", "").startswith("Basic")


def test_without_write_keys_ingest_is_closed_and_a_broken_file_stops_the_gateway(
    tmp_path: Path,
) -> None:
    with pytest.raises(HTTPException):
        WriteKeys(Settings()).workspace(request_with(basic("anything")))
    broken = tmp_path / "write-keys.json"
    broken.write_text('{"not": "a list"}')
    with pytest.raises(ConfigurationError, match="SME_WRITE_KEYS_FILE"):
        create_app(Settings(write_keys_file=broken))
    with pytest.raises(ConfigurationError, match=r"SME_WRITE_KEYS_FILE .* does not exist"):
        create_app(Settings(write_keys_file=tmp_path / "missing.json"))
