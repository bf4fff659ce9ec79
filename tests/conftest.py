"""Shared fixtures: a private redis-server for the session, and a full running stack for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from tests.support.stack import RedisServer, Stack, start_stack
from workers.fake_gemini.config import FakeGeminiConfig
from workers.fake_gemini.server import FakeGeminiServer

if TYPE_CHECKING:
    from tests.support.s3 import MotoS3

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
    s = start_stack(redis_server.url(0), tmp_path_factory.mktemp("stack"), preprocess=2, generate=(3,), beat=True)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A real S3 server (moto, server mode) on loopback for the session; each test makes its own bucket."""
    from tests.support.s3 import MotoS3 as Server  # moto loads only for the tests that use it

    server = Server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGeminiServer]:
    """A fake Gemini server on loopback, one per test module (tests reconfigure its scenario)."""
    server = FakeGeminiServer(FakeGeminiConfig()).start()
    yield server
    server.stop()


@pytest.fixture
def photo() -> bytes:
    return (FIXTURES / "chelsea.png").read_bytes()
