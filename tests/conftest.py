"""Shared fixtures: a private redis-server for the session, and a full running stack for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.stack import RedisServer, Stack, make_stack

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A real Redis database (db 1) flushed before and after the test, for store-level tests."""
    client = redis.Redis.from_url(redis_server.url(1), decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API (gunicorn) + preprocess and generate worker instances + beat, local provider, on db 0."""
    s = make_stack(redis_server.url(0), tmp_path_factory.mktemp("stack"))
    try:
        s.start_worker("preprocess", 2)
        s.start_worker("generate", 3)
        s.start_beat()
        s.start_api()
        s.wait_api()
        s.wait_live()
    except Exception:
        print(s.logs())
        s.stop()
        raise
    yield s
    s.stop()


@pytest.fixture
def photo() -> bytes:
    return (FIXTURES / "chelsea.png").read_bytes()
