"""Printed by `make up` before the processes start: validates the settings and names the provider."""

from __future__ import annotations

import sys

from shared.settings import Settings, SettingsError


def main() -> int:
    try:
        s = Settings.from_env()
    except SettingsError as exc:
        print(f"nanoedit: configuration error: {exc}", file=sys.stderr)
        return 2
    if s.provider == "local":
        print("nanoedit: no GEMINI_API_KEY/GOOGLE_API_KEY set: using the offline 'local' provider "
              "(a deterministic Pillow editor; see README 'Providers')", file=sys.stderr)
    else:
        where = s.gemini_base_url or "Google's endpoint"
        print(f"nanoedit: provider gemini, model {s.gemini_model}, via {where}", file=sys.stderr)
    if not s.auth_enabled:
        print("nanoedit: NANOEDIT_API_KEYS is unset: auth is OFF (development mode)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
