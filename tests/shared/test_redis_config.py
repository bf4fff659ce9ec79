"""TLS and Sentinel settings (shared/redis_config.py) and what they turn into: the job store's client and the Celery
broker options (shared/redis_conn.py, shared/queueing.py). No server is contacted here; tests/e2e/test_redis_tls.py
and tests/e2e/test_redis_sentinel.py run the real thing."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from shared.queueing import celery_config
from shared.redaction import redact, secrets_of
from shared.redis_config import RedisSentinel, RedisTls
from shared.redis_conn import BlockingSentinelConnectionPool, redis_client
from shared.settings import Settings, SettingsError


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    """Three files standing in for a CA bundle, a client certificate and its key (only their existence is read)."""
    paths = {}
    for name in ("ca", "cert", "key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
        paths[name] = str(path)
    return paths


def tls_env(pem: dict[str, str], url: str = "rediss://:s3cret-pass@redis.internal:6380/2") -> dict[str, str]:
    return {"NANOEDIT_REDIS_URL": url, "NANOEDIT_REDIS_TLS_CA": pem["ca"], "NANOEDIT_REDIS_TLS_CERT": pem["cert"],
            "NANOEDIT_REDIS_TLS_KEY": pem["key"]}


def test_rediss_url_with_ca_and_client_certificate_is_parsed(pem: dict[str, str]) -> None:
    # Given a rediss:// URL with a private CA and a client certificate
    # When the settings are read
    s = Settings.from_env(tls_env(pem))
    # Then TLS is on with those files and no Sentinel
    assert s.redis_tls == RedisTls(ca=pem["ca"], cert=pem["cert"], key=pem["key"])
    assert s.redis_sentinel is None


def test_a_plain_url_has_no_tls() -> None:
    assert Settings.from_env({"NANOEDIT_REDIS_URL": "redis://127.0.0.1:6379/0"}).redis_tls is None
    assert Settings.from_env({"NANOEDIT_REDIS_URL": "rediss://redis.internal:6380/0"}).redis_tls == RedisTls()


@pytest.mark.parametrize(("change", "message"), [
    ({"NANOEDIT_REDIS_URL": "redis://redis.internal:6379/0"}, "is not rediss://"),
    ({"NANOEDIT_REDIS_TLS_KEY": ""}, "go together"),
    ({"NANOEDIT_REDIS_TLS_CA": "/nonexistent/ca.pem"}, "no such file"),
])
def test_tls_settings_that_cannot_work_are_refused_at_start_up(pem: dict[str, str], change: dict[str, str],
                                                                message: str) -> None:
    # Given TLS settings with one thing wrong, When they are read, Then start-up fails naming the problem
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**tls_env(pem), **change})


def test_sentinel_settings_are_parsed() -> None:
    # Given three sentinels (one IPv6, one without a port) and a master name
    s = Settings.from_env({"NANOEDIT_REDIS_SENTINELS": "s1.internal:26380, [::1]:26381,s3.internal",
                           "NANOEDIT_REDIS_MASTER": "nanoedit", "NANOEDIT_REDIS_SENTINEL_PASSWORD": "sentinel-pw"})
    # Then each is (host, port), the default port filled in
    assert s.redis_sentinel == RedisSentinel(nodes=(("s1.internal", 26380), ("::1", 26381), ("s3.internal", 26379)),
                                             master="nanoedit", password="sentinel-pw")
    assert "sentinel-pw" not in repr(s)


@pytest.mark.parametrize(("env", "message"), [
    ({"NANOEDIT_REDIS_SENTINELS": "s1:26379"}, "needs NANOEDIT_REDIS_MASTER"),
    ({"NANOEDIT_REDIS_MASTER": "nanoedit"}, "need NANOEDIT_REDIS_SENTINELS"),
    ({"NANOEDIT_REDIS_SENTINELS": "s1:notaport", "NANOEDIT_REDIS_MASTER": "m"}, "is not host:port"),
    ({"NANOEDIT_REDIS_SENTINELS": "redis://s1:26379", "NANOEDIT_REDIS_MASTER": "m"}, "is not host:port"),
])
def test_half_set_or_malformed_sentinel_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_celery_broker_over_tls_verifies_the_certificate(pem: dict[str, str]) -> None:
    # Given TLS settings
    conf = celery_config(Settings.from_env(tls_env(pem)))
    # Then the broker gets kombu's ssl options: certificate required, the CA and the client certificate
    assert conf["broker_url"].startswith("rediss://")
    assert conf["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True,
                                      "ssl_ca_certs": pem["ca"], "ssl_certfile": pem["cert"],
                                      "ssl_keyfile": pem["key"]}


def test_plain_broker_has_no_ssl() -> None:
    conf = celery_config(Settings.from_env({"NANOEDIT_REDIS_URL": "redis://127.0.0.1:6379/4"}))
    assert conf["broker_url"] == "redis://127.0.0.1:6379/4"
    assert conf["broker_use_ssl"] is False
    assert "master_name" not in conf["broker_transport_options"]


def test_celery_broker_through_sentinel_keeps_the_urls_db_and_password() -> None:
    # Given Sentinel settings and a URL whose host is to be ignored but whose db and password apply
    s = Settings.from_env({"NANOEDIT_REDIS_URL": "redis://:p%40ss@ignored.internal:6379/5",
                           "NANOEDIT_REDIS_SENTINELS": "s1:26379,s2:26380", "NANOEDIT_REDIS_MASTER": "nanoedit",
                           "NANOEDIT_REDIS_SENTINEL_PASSWORD": "sentinel-pw"})
    # When the Celery configuration is built
    conf = celery_config(s)
    # Then every sentinel is a sentinel:// entry with the master's password and db, and the transport options
    # name the master and carry the sentinels' own password
    assert conf["broker_url"] == "sentinel://:p%40ss@s1:26379/5;sentinel://:p%40ss@s2:26380/5"
    options = conf["broker_transport_options"]
    assert options["master_name"] == "nanoedit"
    assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert options["visibility_timeout"] == s.effective_visibility_timeout_s
    assert conf["broker_use_ssl"] is False


def test_job_store_client_through_sentinel_uses_a_blocking_sentinel_pool() -> None:
    # Given Sentinel settings (nothing listens: building the client must not connect)
    s = Settings.from_env({"NANOEDIT_REDIS_URL": "redis://:master-pw@ignored:6379/3",
                           "NANOEDIT_REDIS_SENTINELS": "127.0.0.1:1", "NANOEDIT_REDIS_MASTER": "nanoedit",
                           "NANOEDIT_REDIS_SENTINEL_PASSWORD": "sentinel-pw"})
    # When the client is built
    pool = redis_client(s).connection_pool
    # Then it is the blocking Sentinel pool with the URL's db and password and the bounded timeouts
    assert isinstance(pool, BlockingSentinelConnectionPool)
    assert pool.service_name == "nanoedit"
    assert pool.max_connections == 100
    assert pool.timeout == 5
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, "master-pw", 10)
    sentinel_kwargs = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["password"] == "sentinel-pw"


def test_job_store_client_over_tls_verifies_certificate_and_host_name(pem: dict[str, str]) -> None:
    kwargs = redis_client(Settings.from_env(tls_env(pem))).connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert kwargs["ssl_check_hostname"] is True
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (pem["ca"], pem["cert"],
                                                                                       pem["key"])


def test_the_sentinel_password_never_reaches_a_log_line() -> None:
    s = Settings.from_env({"NANOEDIT_REDIS_SENTINELS": "s1:26379", "NANOEDIT_REDIS_MASTER": "m",
                           "NANOEDIT_REDIS_SENTINEL_PASSWORD": "sentinel-pw-123"})
    assert "sentinel-pw-123" not in redact("AUTH failed for sentinel-pw-123", secrets_of(s))
