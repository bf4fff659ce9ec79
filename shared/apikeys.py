"""API keys: who a caller is, what they may do, and which secret signs their webhooks.

Two sources, used together:
- `NANOEDIT_API_KEYS`: a comma-separated list of plain keys (simple deployments). They get the default limits and
  sign webhooks with `NANOEDIT_WEBHOOK_SECRET`.
- `NANOEDIT_API_KEYS_FILE`: a TOML file of `[[keys]]` tables, each with `name`, `key_hash` (never the key
  itself; `nanoedit hash-key` prints it), an optional `webhook_secret` (its own Standard Webhooks secret, so a
  receiver verifies with its key's secret only) and optional limits (`submissions_per_minute`,
  `max_waiting_jobs`, `monthly_budget_usd`). A file that cannot be read or has a bad entry stops start-up with a
  `ConfigError`.

Keys are stored and compared as keyed hashes: HMAC-SHA256 with a server secret (`NANOEDIT_KEY_HASH_SECRET`,
or, when unset, a random secret created once in `NANOEDIT_DATA_DIR/secrets/` — set it explicitly when web
processes run on several machines). A caller's owner id, under which its jobs are stored, is derived from the
hash, so Redis never holds anything from which a key can be recovered.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigError
from shared.settings import Settings, check_webhook_secret

ANONYMOUS = "anonymous"
HASH_PREFIX = "hmac-sha256:"


class KeysFileError(ConfigError):
    """NANOEDIT_API_KEYS_FILE is unreadable or has an invalid entry."""


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Per-key intake limits; None means the deployment default."""

    submissions_per_minute: int | None = None
    max_waiting_jobs: int | None = None
    monthly_budget_usd: float | None = None  # estimated spend per calendar month (UTC); 0 = no budget


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    key_hash: str  # "hmac-sha256:<hex>"
    webhook_secret: str = field(default="", repr=False)  # "" = the deployment's NANOEDIT_WEBHOOK_SECRET
    limits: KeyLimits = KeyLimits()

    @property
    def owner(self) -> str:
        """The opaque owner id the key's jobs are stored under."""
        return owner_for_hash(self.key_hash)


def owner_for_hash(key_hash: str) -> str:
    return "key-" + key_hash.removeprefix(HASH_PREFIX)[:20]


def hash_key(secret: bytes, key: str) -> str:
    return HASH_PREFIX + hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def key_hash_secret(settings: Settings) -> bytes:
    """The server secret keys are hashed with: the configured one, else one created once under the data dir."""
    if settings.key_hash_secret:
        return settings.key_hash_secret.encode()
    path = settings.data_dir / "secrets" / "key_hash_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: of several processes starting at once, one writes and the rest read its secret
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        except FileExistsError:
            pass
    for _ in range(50):
        value = path.read_text().strip()
        if value:
            return value.encode()
    raise ConfigError(f"{path} is empty; delete it or set NANOEDIT_KEY_HASH_SECRET")


class KeyRing:
    """Every known key, looked up by the hash of what a caller presents (constant-time compare)."""

    def __init__(self, secret: bytes, keys: list[ApiKey]) -> None:
        self._secret = secret
        self._keys = keys
        self._by_owner = {k.owner: k for k in keys}

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        if not settings.auth_enabled:
            return cls(b"", [])
        secret = key_hash_secret(settings)
        keys = [ApiKey(name=f"env-{i + 1}", key_hash=hash_key(secret, k)) for i, k in enumerate(settings.api_keys)]
        if settings.api_keys_file:
            keys += load_keys_file(Path(settings.api_keys_file))
        names = [k.name for k in keys]
        if len(set(names)) != len(names):
            raise KeysFileError("NANOEDIT_API_KEYS_FILE: key names must be unique")
        return cls(secret, keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def identify(self, presented: str) -> ApiKey | None:
        if not presented or not self._keys:
            return None
        digest = hash_key(self._secret, presented)
        found = None
        for k in self._keys:  # no early exit: the time taken does not say which entry matched
            if hmac.compare_digest(digest, k.key_hash):
                found = k
        return found

    def by_owner(self, owner: str) -> ApiKey | None:
        return self._by_owner.get(owner)

    def keys(self) -> list[ApiKey]:
        return list(self._keys)


def load_keys_file(path: Path) -> list[ApiKey]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KeysFileError(f"NANOEDIT_API_KEYS_FILE={path}: {exc}") from exc
    entries = doc.get("keys", [])
    if not isinstance(entries, list):
        raise KeysFileError(f"{path}: expected [[keys]] tables")
    out: list[ApiKey] = []
    for i, e in enumerate(entries):
        where = f"{path}: keys[{i}]"
        if not isinstance(e, dict):
            raise KeysFileError(f"{where} is not a table")
        unknown = set(e) - {"name", "key_hash", "webhook_secret", "submissions_per_minute", "max_waiting_jobs",
                            "monthly_budget_usd"}
        if unknown:
            raise KeysFileError(f"{where}: unknown field(s) {sorted(unknown)}")
        name, key_hash = e.get("name"), e.get("key_hash")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise KeysFileError(f"{where}: 'name' must be a non-empty string of at most 64 characters")
        if not isinstance(key_hash, str) or not _is_hash(key_hash):
            raise KeysFileError(f"{where} ({name}): 'key_hash' must be '{HASH_PREFIX}' + 64 hex characters, as "
                                "printed by `nanoedit hash-key`")
        secret = e.get("webhook_secret", "")
        if not isinstance(secret, str):
            raise KeysFileError(f"{where} ({name}): 'webhook_secret' must be a string")
        if secret:
            try:
                check_webhook_secret(secret)
            except ConfigError as exc:
                raise KeysFileError(f"{where} ({name}): {exc}") from None
        limits = KeyLimits(submissions_per_minute=_limit(e, "submissions_per_minute", where),
                           max_waiting_jobs=_limit(e, "max_waiting_jobs", where),
                           monthly_budget_usd=_budget(e, "monthly_budget_usd", where))
        out.append(ApiKey(name=name.strip(), key_hash=key_hash.lower(), webhook_secret=secret, limits=limits))
    return out


def _is_hash(value: str) -> bool:
    digest = value.lower().removeprefix(HASH_PREFIX)
    return value.lower().startswith(HASH_PREFIX) and len(digest) == 64 and all(c in "0123456789abcdef"
                                                                                for c in digest)


def _budget(entry: dict[str, object], name: str, where: str) -> float | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0 or value == float("inf"):
        raise KeysFileError(f"{where}: '{name}' must be a number of US dollars ≥ 0 (0 = no budget)")
    return float(value)


def _limit(entry: dict[str, object], name: str, where: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise KeysFileError(f"{where}: '{name}' must be a whole number ≥ 0")
    return value
