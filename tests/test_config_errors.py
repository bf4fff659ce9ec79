"""Configuration errors are one family under `NanoeditError` (and stay `ValueError`s for older callers)."""

from __future__ import annotations

import pytest

from monitoring.alerts.channels import ChannelConfigError
from monitoring.alerts.rules import RulesError
from shared.errors import ConfigError, NanoeditError
from shared.settings import Settings, SettingsError
from workers.fake_gemini.config import FakeConfigError


@pytest.mark.parametrize("cls", [SettingsError, RulesError, ChannelConfigError, FakeConfigError])
def test_every_config_error_is_a_config_error(cls: type[Exception]) -> None:
    assert issubclass(cls, ConfigError) and issubclass(cls, NanoeditError) and issubclass(cls, ValueError)


def test_a_config_error_reads_as_its_details_and_is_an_internal_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"NANOEDIT_PORT": "nope"})
    assert str(caught.value) == "NANOEDIT_PORT='nope' is not an integer"
    assert caught.value.code == "internal_error" and caught.value.status == 500
