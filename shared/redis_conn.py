"""Redis connections built from settings: the client for the job store and fleet state (`redis_client`) and the
Celery broker's connection options (`broker_connection`, used by shared/queueing.py). Both honour the same TLS
(`rediss://`, `NANOEDIT_REDIS_TLS_*`) and Sentinel (`NANOEDIT_REDIS_SENTINELS`) settings of
shared/redis_config.py, so the job store and the broker always reach the same Redis the same way.
docs/operations.md, "Redis", covers TLS, Sentinel and what clients see at a failover.

Key layouts live with their owners (jobs: shared/jobs/keys.py; heartbeats: shared/liveness.py; the health report:
monitoring/report.py; limiter, circuit, outcomes, alerts: their own modules).

`BlockingSentinelConnectionPool` is hand-written because redis-py ships a blocking pool and a Sentinel pool but
no pool that is both; it only combines the two classes.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from shared.redis_config import RedisSentinel, RedisTls
from shared.settings import Settings

# Connections one process opens at most. Callers beyond it (a gevent web worker serving hundreds of requests at
# once) wait up to POOL_WAIT_S for a free one instead of failing at once (redis-py's plain pool raises
# MaxConnectionsError past 100); Redis commands take well under a millisecond, so the wait is short.
MAX_CONNECTIONS = 100
POOL_WAIT_S = 5
SOCKET_TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 5
HEALTH_CHECK_INTERVAL_S = 30
# Through Sentinel, a command that meets a dead or demoted master is retried with backoff: every reconnect asks
# the sentinels for the master again (redis-py applies the policy to the connect and to the command, so a
# command waits at most ~15 s in all, usually a few), and a failover that completes within a few seconds is a
# delay rather than an error. A longer one surfaces as redis.ConnectionError: the API answers 503 and a worker
# task leaves its message for redelivery (workers/tasks.py `_crash`).
SENTINEL_RETRY = Retry(ExponentialWithJitterBackoff(base=0.2, cap=1.5), retries=3)


class BlockingSentinelConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool (re-discovers the master on every new connection and drops connections to a
    demoted one) with the blocking pool's bounded wait for a free connection."""


def tls_options(tls: RedisTls) -> dict[str, Any]:
    """redis-py / kombu keyword arguments for verified TLS: certificate required, host name checked."""
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    if tls.ca:
        options["ssl_ca_certs"] = tls.ca
    if tls.cert:
        options["ssl_certfile"] = tls.cert
        options["ssl_keyfile"] = tls.key
    return options


def _timeouts() -> dict[str, Any]:
    return {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": CONNECT_TIMEOUT_S}


def redis_client(settings: Settings) -> redis.Redis:
    """A client with bounded timeouts: a dead Redis must surface as an error, never as a hang."""
    if settings.redis_sentinel is not None:
        return _sentinel_client(settings, settings.redis_sentinel)
    tls = tls_options(settings.redis_tls) if settings.redis_tls is not None else {}
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry_on_timeout=True,
        **_timeouts(),
        **tls,
    )
    return redis.Redis(connection_pool=pool)


def sentinel_node_options(settings: Settings, sentinel: RedisSentinel) -> dict[str, Any]:
    """How to talk to the sentinels themselves: same timeouts and TLS as the data nodes, their own password, and
    one immediate retry only (redis-py's default would spend seconds on a dead sentinel before asking the next)."""
    options: dict[str, Any] = {**_timeouts(), "retry": Retry(NoBackoff(), 1)}
    if sentinel.password:
        options["password"] = sentinel.password
    if settings.redis_tls is not None:
        options.update(ssl=True, **tls_options(settings.redis_tls))
    return options


def _sentinel_client(settings: Settings, sentinel: RedisSentinel) -> redis.Redis:
    url = parse_url(settings.redis_url)  # the URL's db, user and password apply; its host is replaced
    tls = tls_options(settings.redis_tls) if settings.redis_tls is not None else {}
    manager = Sentinel(list(sentinel.nodes), sentinel_kwargs=sentinel_node_options(settings, sentinel))
    return manager.master_for(
        sentinel.master,
        connection_pool_class=BlockingSentinelConnectionPool,
        db=url.get("db", 0),
        username=url.get("username"),
        password=url.get("password"),
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=SENTINEL_RETRY,
        ssl=bool(tls),
        **_timeouts(),
        **tls,
    )


@dataclass(frozen=True, slots=True)
class BrokerConnection:
    """The Celery settings that say where the broker is: `broker_url`, the entries to merge into
    `broker_transport_options`, and `broker_use_ssl` (False when plain)."""

    url: str
    transport_options: dict[str, Any] = field(default_factory=dict)
    use_ssl: dict[str, Any] | bool = False


def broker_connection(settings: Settings) -> BrokerConnection:
    """kombu's Redis transport: `rediss://` needs `broker_use_ssl` (without it kombu falls back to an unverified
    connection); Sentinel is `sentinel://h1:p/db;sentinel://h2:p/db` with the master's credentials on every
    entry (kombu re-reads them when it moves on to the next sentinel) plus `master_name` and `sentinel_kwargs`."""
    use_ssl: dict[str, Any] | bool = tls_options(settings.redis_tls) if settings.redis_tls is not None else False
    sentinel = settings.redis_sentinel
    if sentinel is None:
        return BrokerConnection(url=settings.redis_url, use_ssl=use_ssl)
    url = parse_url(settings.redis_url)
    user, password = url.get("username") or "", url.get("password") or ""
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user or password else ""
    db = url.get("db", 0)
    hosts = ";".join(f"sentinel://{auth}{_netloc(host, port)}/{db}" for host, port in sentinel.nodes)
    return BrokerConnection(url=hosts, use_ssl=use_ssl, transport_options={
        "master_name": sentinel.master, "sentinel_kwargs": sentinel_node_options(settings, sentinel)})


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
