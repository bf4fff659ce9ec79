"""API keys: keyed hashes, the keys file and its errors, the data-dir secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.apikeys import KeyRing, KeysFileError, hash_key, key_hash_secret, load_keys_file
from shared.settings import Settings

SECRET = "server-secret"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def keys_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(body)
    return path


def test_env_and_file_keys_are_identified_by_their_keyed_hash(tmp_path: Path) -> None:
    # Given one key in the environment and one in the file, hashed with the server secret
    path = keys_file(tmp_path, f"""
[[keys]]
name = "acme"
key_hash = "{hash_key(SECRET.encode(), 'acme-key-123')}"
webhook_secret = "{WHSEC}"
submissions_per_minute = 5
max_waiting_jobs = 300
monthly_budget_usd = 12.5
""")
    ring = KeyRing.from_settings(Settings(api_keys=("plain-key-123",), api_keys_file=str(path),
                                          key_hash_secret=SECRET, data_dir=tmp_path))
    # When callers present them  Then each maps to its own entry; anything else maps to nothing
    acme, plain = ring.identify("acme-key-123"), ring.identify("plain-key-123")
    assert acme is not None and acme.name == "acme" and acme.webhook_secret == WHSEC
    assert acme.limits.submissions_per_minute == 5 and acme.limits.max_waiting_jobs == 300
    assert acme.limits.monthly_budget_usd == 12.5 and plain.limits.monthly_budget_usd is None
    assert plain is not None and plain.name == "env-1" and plain.webhook_secret == ""
    assert acme.owner != plain.owner and ring.by_owner(acme.owner) == acme
    assert ring.identify("acme-key-124") is None and ring.identify("") is None


def test_the_owner_id_depends_on_the_server_secret() -> None:
    assert hash_key(b"one", "k") != hash_key(b"two", "k")
    assert hash_key(b"one", "k").startswith("hmac-sha256:") and len(hash_key(b"one", "k")) == 12 + 64


def test_without_a_configured_secret_one_is_created_once_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(api_keys=("k-123456",), data_dir=tmp_path)
    first = key_hash_secret(settings)
    assert first == key_hash_secret(settings) and len(first) == 64
    assert (tmp_path / "secrets" / "key_hash_secret").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("body", "message"), [
    ("[[keys]\nname=", "keys.toml"),
    ('[[keys]]\nname = "a"\nkey_hash = "sha256:00"\n', "key_hash"),
    (f'[[keys]]\nname = ""\nkey_hash = "{hash_key(b"s", "k")}"\n', "name"),
    (f'[[keys]]\nname = "a"\nkey_hash = "{hash_key(b"s", "k")}"\nwebhook_secret = "nope"\n', "whsec_"),
    (f'[[keys]]\nname = "a"\nkey_hash = "{hash_key(b"s", "k")}"\nmax_waiting_jobs = -1\n', "max_waiting_jobs"),
    (f'[[keys]]\nname = "a"\nkey_hash = "{hash_key(b"s", "k")}"\nrate = 3\n', "unknown field"),
    (f'[[keys]]\nname = "a"\nkey_hash = "{hash_key(b"s", "k")}"\nmonthly_budget_usd = -1\n', "monthly_budget_usd"),
    (f'[[keys]]\nname = "a"\nkey_hash = "{hash_key(b"s", "k")}"\nmonthly_budget_usd = "10"\n',
     "monthly_budget_usd"),
    (f'[[keys]]\nname = "a"\nkey_hash = "{hash_key(b"s", "k")}"\nmonthly_budget_usd = inf\n', "monthly_budget_usd"),
])
def test_a_bad_keys_file_stops_start_up_with_the_reason(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(KeysFileError, match=message):
        load_keys_file(keys_file(tmp_path, body))


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    entry = f'[[keys]]\nname = "a"\nkey_hash = "{hash_key(b"s", "k")}"\n'
    path = keys_file(tmp_path, entry + entry)
    with pytest.raises(KeysFileError, match="unique"):
        KeyRing.from_settings(Settings(api_keys_file=str(path), key_hash_secret="s", data_dir=tmp_path))
