"""API keys. Bearer keys are bound to one workspace and stored hashed (SHA-256 of a
high-entropy random key) in `SME_API_KEYS_FILE`; `SME_ADMIN_API_KEY` sees every workspace.
With no keys configured auth is off, and the gateway refuses to listen beyond loopback.
A key never sees another workspace: such requests get the same 404 as a missing resource.

Every key must be hard to guess (`key_problem`): at least 24 printable ASCII characters
and at least 128 bits, estimated as length x log2(alphabet), where the alphabet is the sum
of the character classes the key uses (a-z 26, A-Z 26, 0-9 10, other symbols 32), and no
character may make up more than a quarter of the key. The gateway refuses to start with a
weaker admin key; a workspace key is checked where it is created or added."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

import orjson
from fastapi import HTTPException, Request

from sme.errors import ConfigurationError
from sme.settings import Settings

KEY_PREFIX = "sme_"
MIN_KEY_LENGTH = 24
MIN_KEY_BITS = 128
_CLASSES = (
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
    (frozenset(string.punctuation), 32),
)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    workspace_id: str | None  # None: every workspace (admin, or auth off)

    def may_see(self, workspace_id: str) -> bool:
        return self.workspace_id is None or self.workspace_id == workspace_id


LOCAL = Principal("local", None)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(prefix: str = KEY_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


def key_bits(key: str) -> float:
    """Estimated entropy: length x log2 of the alphabet the key's character classes span."""
    alphabet = sum(size for chars, size in _CLASSES if any(c in chars for c in key))
    return len(key) * math.log2(alphabet) if alphabet > 1 else 0.0


def key_problem(key: str) -> str | None:
    """Why `key` is too weak to be an API key, or None. Never includes the key."""
    if any(c not in string.ascii_letters + string.digits + string.punctuation for c in key):
        return "only printable ASCII without spaces is allowed"
    if len(key) < MIN_KEY_LENGTH:
        return f"it has {len(key)} characters; at least {MIN_KEY_LENGTH} are needed"
    bits = key_bits(key)
    if bits < MIN_KEY_BITS:
        return f"about {bits:.0f} bits of entropy; at least {MIN_KEY_BITS} are needed"
    if max(key.count(c) for c in set(key)) * 4 > len(key):
        return "one character makes up more than a quarter of it"
    return None


def check_key(key: str, what: str) -> None:
    problem = key_problem(key)
    if problem is not None:
        raise ConfigurationError(
            f"{what} is too weak: {problem} (use `sme keys create`, or e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    workspace_id: str
    sha256: str


def load_keys(path: Path | None, setting: str = "SME_API_KEYS_FILE") -> list[KeyRecord]:
    if path is None:
        return []
    if not path.exists():
        raise ConfigurationError(f"{setting} {path} does not exist")
    try:
        rows = orjson.loads(path.read_bytes())
        return [KeyRecord(str(r["id"]), str(r["workspace_id"]), str(r["sha256"])) for r in rows]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"{setting} {path} is not a list of {{id, workspace_id, sha256}}"
        ) from exc


def add_key(
    path: Path, key_id: str, workspace_id: str, key: str | None = None, prefix: str = KEY_PREFIX
) -> str:
    """Add a key for a workspace (a new random one, or `key` if it is strong enough); store
    only its hash; return the key (shown once)."""
    if key is not None:
        check_key(key, "the supplied API key")
    records = load_keys(path) if path.exists() else []
    if any(r.id == key_id for r in records):
        raise ConfigurationError(f"a key with id {key_id!r} exists already")
    key = new_key(prefix) if key is None else key
    if any(r.sha256 == hash_key(key) for r in records):
        raise ConfigurationError("that key is in use already")
    rows = [{"id": r.id, "workspace_id": r.workspace_id, "sha256": r.sha256} for r in records]
    rows.append({"id": key_id, "workspace_id": workspace_id, "sha256": hash_key(key)})
    path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    path.chmod(0o600)
    return key


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._by_hash = {r.sha256: r for r in load_keys(settings.api_keys_file)}
        admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else ""
        if admin:
            check_key(admin, "SME_ADMIN_API_KEY")
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
