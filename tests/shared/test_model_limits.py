"""Per-model limits in the fleet limiter (catalogue `[models.<id>.limits]`): concurrency, rpm and images per minute
of one model, enforced in the same Lua script as the fleet-wide limits (real Redis)."""

from __future__ import annotations

import pytest
import redis

from shared.catalogue import CatalogueError, model_limits, parse_catalogue
from shared.limiter import FleetLimiter, LimitConfig, ModelLimits

PRO, FLASH = "gemini-3-pro-image", "gemini-3.1-flash-image"


def limiter(r: redis.Redis, **limits: ModelLimits) -> FleetLimiter:
    return FleetLimiter(r, "t", LimitConfig(concurrency=10), model_limits={PRO: limits["pro"]}
                        if "pro" in limits else {})


def test_a_models_in_flight_cap_applies_to_that_model_only(redis_db: redis.Redis) -> None:
    fleet = limiter(redis_db, pro=ModelLimits(concurrency=1))
    assert fleet.try_acquire("a:0", model=PRO).granted
    refused = fleet.try_acquire("b:0", model=PRO)
    assert not refused.granted and refused.reason == "model_concurrency"
    assert fleet.try_acquire("c:0", model=FLASH).granted  # other models: only the fleet's cap (10)
    assert fleet.try_acquire("a:0", model=PRO).granted  # a holder already admitted renews
    assert fleet.state()["model_limits"] == {PRO: {"concurrency": 1, "rpm": 0, "images_per_min": 0, "in_flight": 1}}
    fleet.release("a:0", model=PRO)
    assert fleet.try_acquire("b:0", model=PRO).granted
    assert fleet.in_flight() == 2  # b:0 and c:0 fleet-wide


def test_a_models_rpm_and_images_per_minute(redis_db: redis.Redis) -> None:
    fleet = limiter(redis_db, pro=ModelLimits(rpm=60))
    assert fleet.try_acquire("a:0", model=PRO).granted
    fleet.release("a:0", model=PRO)
    refused = fleet.try_acquire("b:0", model=PRO)
    assert not refused.granted and refused.reason == "model_rpm" and 0 < refused.wait_s <= 1.0
    assert fleet.try_acquire("c:0", model=FLASH).granted

    redis_db.flushdb()
    fleet = limiter(redis_db, pro=ModelLimits(images_per_min=30))
    assert fleet.try_acquire("a:0", 2, model=PRO).granted  # 2 images: the next one no sooner than 4 s
    refused = fleet.try_acquire("b:0", model=PRO)
    assert not refused.granted and refused.reason == "model_images_per_min" and 3 < refused.wait_s <= 4.0


def test_a_refused_model_check_charges_nothing_fleet_wide(redis_db: redis.Redis) -> None:
    fleet = FleetLimiter(redis_db, "t", LimitConfig(concurrency=10, rpm=6000),
                         model_limits={PRO: ModelLimits(concurrency=1)})
    assert fleet.try_acquire("a:0", model=PRO).granted
    before = redis_db.get("t:limiter:tat:requests")
    assert not fleet.try_acquire("b:0", model=PRO).granted
    assert redis_db.get("t:limiter:tat:requests") == before  # the fleet's GCRA was not moved by the refusal
    assert fleet.holders() == ["a:0"]


def test_the_catalogue_sets_model_limits_and_refuses_bad_ones() -> None:
    base = {"default": PRO, "models": {PRO: {"limits": {"concurrency": 2, "rpm": 10}}, FLASH: {}}}
    assert model_limits(parse_catalogue(base, "t.toml")) == {PRO: ModelLimits(concurrency=2, rpm=10)}
    for bad in ({"rpm": -1}, {"rpm": 1.5}, {"burst": 3}, "fast"):
        with pytest.raises(CatalogueError, match=PRO):
            parse_catalogue({"default": PRO, "models": {PRO: {"limits": bad}}}, "t.toml")
