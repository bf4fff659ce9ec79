"""The provider error table is complete and consistent with the public error codes."""

from __future__ import annotations

import pytest

from shared.errors import all_codes, spec_for
from workers.providers import base
from workers.providers.base import ERROR_TABLE, ProviderError, Retry, rule_for


def all_subclasses(cls: type[ProviderError]) -> set[type[ProviderError]]:
    out = set(cls.__subclasses__())
    for sub in list(out):
        out |= all_subclasses(sub)
    return out


def test_every_provider_error_class_has_its_own_row() -> None:
    rows = {cls for cls, _ in ERROR_TABLE}
    assert all_subclasses(ProviderError) | {ProviderError} <= rows


@pytest.mark.parametrize(("cls", "rule"), ERROR_TABLE, ids=[c.__name__ for c, _ in ERROR_TABLE])
def test_each_row_uses_a_public_code_with_a_suggestion(cls: type[ProviderError], rule: base.Rule) -> None:
    assert rule.code in all_codes()
    assert spec_for(rule.code).suggestion
    assert rule_for(cls) is rule  # no row is shadowed by a more general one above it
    assert cls().code == rule.code


@pytest.mark.parametrize("cls", [base.ProviderAuthError, base.ModelUnavailable, base.ContentBlocked,
                                 base.InvalidProviderRequest, base.QuotaExhaustedForDay, base.NoImageGenerated])
def test_never_retried(cls: type[ProviderError]) -> None:
    assert rule_for(cls).retry is Retry.NEVER and not cls().retryable


@pytest.mark.parametrize("cls", [base.ProviderTimeout, base.ProviderUnavailable, base.ProviderRateLimited])
def test_transient_ones_back_off(cls: type[ProviderError]) -> None:
    assert rule_for(cls).retry is Retry.BACKOFF


def test_429_cools_the_whole_fleet_and_does_not_trip_the_breaker() -> None:
    rule = rule_for(base.ProviderRateLimited)
    assert rule.fleet_cooldown and not rule.transient
    assert rule_for(base.EmptyResponse).retry is Retry.ONCE


def test_readme_documents_every_row_of_the_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for _, rule in ERROR_TABLE:
        assert f"| `{rule.outcome}` | {rule.note} | `{rule.code}`" in readme, rule.outcome
