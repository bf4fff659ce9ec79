"""`python -m workers.fake_gemini`: run the fake Gemini API (see `cli`)."""

from __future__ import annotations

from workers.fake_gemini.cli import main

raise SystemExit(main())
