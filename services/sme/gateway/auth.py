"""API keys. Bearer keys are bound to one workspace and stored hashed (SHA-256 of a
high-entropy random key) in `SME_API_KEYS_FILE`; `SME_ADMIN_API_KEY` sees every workspace.
With no keys configured auth is off, and the gateway refuses to listen beyond loopback.
A key never sees another workspace: such requests get the same 404 as a missing resource."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson
from fastapi import HTTPException, Request

from sme.errors import ConfigurationError
from sme.settings import Settings

KEY_PREFIX = "sme_"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    workspace_id: str | None  # None: every workspace (admin, or auth off)

    def may_see(self, workspace_id: str) -> bool:
        return self.workspace_id is None or self.workspace_id == workspace_id


LOCAL = Principal("local", None)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    workspace_id: str
    sha256: str


def load_keys(path: Path | None) -> list[KeyRecord]:
    if path is None:
        return []
    if not path.exists():
        raise ConfigurationError(f"SME_API_KEYS_FILE {path} does not exist")
    try:
        rows = orjson.loads(path.read_bytes())
        return [KeyRecord(str(r["id"]), str(r["workspace_id"]), str(r["sha256"])) for r in rows]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"SME_API_KEYS_FILE {path} is not a list of {{id, workspace_id, sha256}}"
        ) from exc


def add_key(path: Path, key_id: str, workspace_id: str) -> str:
    """Create a key for a workspace; store only its hash; return the key (shown once)."""
    records = load_keys(path) if path.exists() else []
    if any(r.id == key_id for r in records):
        raise ConfigurationError(f"a key with id {key_id!r} exists already")
    key = new_key()
    rows = [{"id": r.id, "workspace_id": r.workspace_id, "sha256": r.sha256} for r in records]
    rows.append({"id": key_id, "workspace_id": workspace_id, "sha256": hash_key(key)})
    path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    path.chmod(0o600)
    return key


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._by_hash = {r.sha256: r for r in load_keys(settings.api_keys_file)}
        admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else ""
        self._admin_hash = hash_key(admin) if admin else None
        self.enabled = bool(self._by_hash) or self._admin_hash is not None
        if not self.enabled and not _is_loopback(settings.http_host):
            raise ConfigurationError(
                "no API keys are configured (SME_API_KEYS_FILE, SME_ADMIN_API_KEY), so the "
                f"gateway only listens on loopback; SME_HTTP_HOST={settings.http_host} refused"
            )

    def principal(self, request: Request) -> Principal:
        if not self.enabled:
            return LOCAL
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                401, "missing bearer API key", headers={"WWW-Authenticate": "Bearer"}
            )
        digest = hash_key(token.strip())
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal("admin", None)
        record = self._by_hash.get(digest)
        if record is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return Principal(record.id, record.workspace_id)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
