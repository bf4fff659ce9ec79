"""Reading `NANOEDIT_*` values: one typed reader per kind of value, each refusing a malformed one with a
`SettingsError` that names the variable. `shared/settings.py` builds the `Settings` object with them; the rules for
Redis (shared/redis_config.py) and blob storage (shared/blob_config.py) live beside their owners.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping

from shared.blob_config import BlobConfig, blob_config_from_env
from shared.errors import ConfigError
from shared.outbound import OutboundPolicy
from shared.redis_config import RedisSentinel, RedisTls, sentinel_from_env, tls_from_env


class SettingsError(ConfigError):
    """A configuration value is malformed; raised at start-up so a bad deploy fails loudly."""


def read_worker_class(env: Mapping[str, str]) -> str:
    value = env.get("NANOEDIT_WEB_WORKER_CLASS", "").strip().lower() or "gevent"
    if value not in ("gevent", "gthread"):
        raise SettingsError(f"NANOEDIT_WEB_WORKER_CLASS={value!r}: use gevent or gthread")
    return value


def read_pool_max(env: Mapping[str, str]) -> int:
    value = read_int(env, "NANOEDIT_POOL_MAX_PROCESSES", 64, 1)
    if value > 1024:
        raise SettingsError(f"NANOEDIT_POOL_MAX_PROCESSES={value} is above 1024: a resize that large would exhaust "
                            "the host; run more instances instead")
    return value


def read_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise SettingsError(f"{name}={value} is below the minimum {minimum}")
    return value


def read_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc
    if value < minimum:
        raise SettingsError(f"{name}={value} is below the minimum {minimum}")
    return value


def check_webhook_secret(secret: str) -> None:
    """Standard Webhooks secrets are `whsec_` + base64 of the key bytes; refuse anything else at start-up."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16:
        raise SettingsError("NANOEDIT_WEBHOOK_SECRET must be 'whsec_' + base64 of at least 16 random bytes, e.g. "
                            "whsec_$(head -c 32 /dev/urandom | base64)")


def read_redis_url(env: Mapping[str, str]) -> str:
    return env.get("NANOEDIT_REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0"


def read_redis_tls(env: Mapping[str, str]) -> RedisTls | None:
    try:
        return tls_from_env(env, read_redis_url(env))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def read_redis_sentinel(env: Mapping[str, str]) -> RedisSentinel | None:
    try:
        return sentinel_from_env(env)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def read_csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())


def read_allow_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    hosts = read_csv(env, "NANOEDIT_WEBHOOK_ALLOW_HOSTS")
    try:
        OutboundPolicy.build(hosts)
    except ValueError as exc:
        raise SettingsError(f"NANOEDIT_WEBHOOK_ALLOW_HOSTS: {exc}") from None
    return hosts


def read_ports(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = read_csv(env, name)
    if not raw:
        return default
    if not all(p.isdigit() and 1 <= int(p) <= 65535 for p in raw):
        raise SettingsError(f"{name}={','.join(raw)!r}: use comma-separated port numbers (1..65535)")
    return tuple(int(p) for p in raw)


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback IP literal (127.0.0.0/8, ::1; brackets allowed); other names may resolve anywhere."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def read_blob_config(env: Mapping[str, str]) -> BlobConfig:
    try:
        return blob_config_from_env(env)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def check_bind(env: Mapping[str, str]) -> bool:
    """Safe default: with auth off the API binds loopback only. Returns NANOEDIT_ALLOW_INSECURE.

    A non-loopback NANOEDIT_HOST needs NANOEDIT_API_KEYS / NANOEDIT_API_KEYS_FILE, or NANOEDIT_ALLOW_INSECURE=1
    (then the API and the start-up banner warn loudly)."""
    insecure = env.get("NANOEDIT_ALLOW_INSECURE", "").strip().lower() in ("1", "true", "yes", "on")
    host = env.get("NANOEDIT_HOST", "").strip() or "127.0.0.1"
    auth = bool(read_csv(env, "NANOEDIT_API_KEYS") or env.get("NANOEDIT_API_KEYS_FILE", "").strip())
    if not auth and not insecure and not is_loopback_host(host):
        raise SettingsError(f"NANOEDIT_HOST={host} with auth off would let anyone on the network use the service: "
                            "set NANOEDIT_API_KEYS (or NANOEDIT_API_KEYS_FILE), bind 127.0.0.1, or set "
                            "NANOEDIT_ALLOW_INSECURE=1 if you really mean it")
    return insecure
