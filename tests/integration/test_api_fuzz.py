"""Schemathesis against the real gateway (embedded ClickHouse, real broker), every check on
(`--checks all`: no server error, every status, content type, header and body as documented,
invalid data refused, valid data accepted, `Allow` right...), with auth off, with the admin
key, with a workspace key and (the `/v1/` ingest routes) with a write key. `make fuzz` runs
more examples (SME_FUZZ_EXAMPLES)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from sme.gateway.auth import add_key
from sme.settings import Settings
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.integration
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("SME_FUZZ_EXAMPLES", "15"))
ADMIN = "fuzz-admin_K3y-0123456789abcdefXYZ"
TRACKING_SECRET = "fuzz-tracking-0123456789abcdef0123456789"


def tracked(settings: Settings) -> Settings:
    """With a tracking key, so the `/t/` routes verify tokens (unset, they answer 503)."""
    return settings.model_copy(update={"tracking_secret": SecretStr(TRACKING_SECRET)})


async def schemathesis(
    base_url: str, workdir: Path, key: str | None, extra: tuple[str, ...] = ()
) -> str:
    """`key` is sent as a bearer token; `extra` arguments go last (a filter, a header)."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--no-color",
        "--output-truncate",
        "false",
        "--workers",
        "1",  # hypothesis's lambda-source cache is not thread-safe (spurious runtime errors)
    ]
    if os.environ.get("SME_FUZZ_SEED"):
        command += ["--seed", os.environ["SME_FUZZ_SEED"]]
    if key is not None:
        command += ["--header", f"Authorization: Bearer {key}"]
    command += extra
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 3000)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    summary = re.search(r"(\d+) generated, (\d+) passed", text)
    assert summary is not None and summary[1] == summary[2] and int(summary[1]) > 0, text
    print(f"schemathesis ({'no key' if key is None else 'key'}): {summary[0]}")
    return text


async def test_the_api_conforms_to_its_schema_with_auth_off(
    test_settings: Settings, tmp_path: Path
) -> None:
    async with running_gateway(tracked(test_settings)) as http:
        await schemathesis(str(http.base_url).rstrip("/"), tmp_path, None)


@pytest.mark.timeout(600)  # four runs of schemathesis
async def test_the_api_conforms_to_its_schema_with_admin_workspace_and_write_keys(
    test_settings: Settings, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    workspace_key = add_key(keys_file, "fuzz", "0")
    write_keys = tmp_path / "write-keys.json"
    write_key = add_key(write_keys, "fuzz-cdp", "0", prefix="sme_wk_")
    settings = tracked(test_settings).model_copy(
        update={
            "api_keys_file": keys_file,
            "admin_api_key": SecretStr(ADMIN),
            "write_keys_file": write_keys,
        }
    )
    async with running_gateway(settings) as http:
        base = str(http.base_url).rstrip("/")
        await schemathesis(base, tmp_path, ADMIN)
        await schemathesis(base, tmp_path, workspace_key)
        await schemathesis(base, tmp_path, "sme_not-a-key-0123456789abcdefghij")  # all 401
        # The Segment-compatible ingest with its write key (HTTP Basic, the key as user name):
        # past the 401 every other run gets there, into validation and the broker.
        basic = base64.b64encode(f"{write_key}:".encode()).decode()
        ingest = ("--include-path-regex", "^/v1/", "--header", f"Authorization: Basic {basic}")
        await schemathesis(base, tmp_path, None, ingest)
