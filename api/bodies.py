"""Bounded request bodies: read a JSON object without letting a client choose how much memory or stack it costs.

Every JSON body of the API goes through `read_json_object` (submissions, operator routes). In order, each step
cheap before the next:

1. `Content-Length` over the cap → 413 `payload_too_large` before a byte is read; a body without one (chunked)
   is read up to the cap + 1 byte and refused the same way.
2. The structure outside string values ("skeleton": the body with every string literal removed, found by one
   regex pass at C speed) must be at most `MAX_SKELETON_BYTES` and nest at most `max_depth` arrays/objects deep.
   This bounds what `json.loads` can allocate (a 30 MB body of `[[],[],…]` would build millions of lists) and
   makes a RecursionError impossible, without a hand-written parser: the stdlib decoder does the real parse.
3. Strict UTF-8 (invalid bytes, encoded surrogates) → 400 `invalid_request`; lone `\\ud800` escapes too (after
   the parse: they cannot be stored or logged as UTF-8).
4. `json.loads` with NaN/Infinity refused (`parse_constant`), numbers that overflow a float refused
   (`parse_float`: `1e999` would be `inf`), duplicate keys refused (`object_pairs_hook`: which one wins is
   ambiguous between parsers), integers over 4,300 digits refused by Python itself.

Why not a library: the stdlib decoder has no depth or size option, and the well-kept alternatives (orjson,
simdjson) fix their depth limit at 1024 or more and still build every object; a 20-line pre-scan is enough.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Request

from shared.errors import ClientInputError

MAX_SKELETON_BYTES = 64 * 1024  # JSON outside string values: keys are strings, so this is numbers and brackets
OPERATOR_JSON_BYTES = 64 * 1024  # operator routes (limits, circuit, alerts, silences) take small objects
_STRING = re.compile(rb'"[^"]*"')  # after escaped backslashes and quotes are removed (see _skeleton)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_CHUNK = 1024 * 1024


def _invalid(details: str, suggestion: str | None = None) -> ClientInputError:
    return ClientInputError(details, code="invalid_request", message="The request body is not valid JSON.",
                            suggestion=suggestion or "Send one JSON object, UTF-8, without NaN/Infinity or "
                                                     "duplicate keys; see GET /openapi.json.")


def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refusing (413) anything over `max_bytes` before or while reading it."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise ClientInputError(f"body of {declared} bytes exceeds the limit of {max_bytes} bytes",
                               code="payload_too_large")
    parts: list[bytes] = []
    size = 0
    stream = request.stream
    while size <= max_bytes:
        chunk = stream.read(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > max_bytes:
        raise ClientInputError(f"body exceeds the limit of {max_bytes} bytes", code="payload_too_large")
    return b"".join(parts)


def check_structure(raw: bytes, max_depth: int) -> None:
    """Refuse a body whose non-string part is too big or nests deeper than `max_depth` (see the module doc)."""
    skeleton = _skeleton(raw) if b"\\" in raw else _STRING.sub(b'""', raw)  # no escapes: no copies
    if len(skeleton) > MAX_SKELETON_BYTES:
        raise _invalid(f"the JSON outside string values is {len(skeleton)} bytes; the limit is "
                       f"{MAX_SKELETON_BYTES}", "Send a plain object of fields; images go in base64 strings.")
    depth = deepest = 0
    for byte in skeleton.translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > max_depth:
                raise _invalid(f"JSON nested more than {max_depth} levels deep",
                               f"Nest arrays and objects at most {max_depth} levels deep.")


def _skeleton(raw: bytes) -> bytes:
    """`raw` with every string literal reduced to `""`. Escapes are removed first, in C: escaped backslashes
    (`\\\\`, left to right as a JSON decoder reads them), then escaped quotes (`\\"`); what remains between
    two quotes is one string."""
    return _STRING.sub(b'""', raw.replace(b"\\\\", b"").replace(b'\\"', b""))


def _lone_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return has_lone_surrogate(value)
    if isinstance(value, dict):
        return any(_lone_surrogates(k) or _lone_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogates(v) for v in value)
    return False


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def parse_json(raw: bytes, max_depth: int, *, empty: Any = None) -> Any:
    """Parse a bounded body (see the module doc); every refusal is a 400 `invalid_request`.

    Pass the body itself (no other reference to it): it is released once decoded, so a large submission is
    held as bytes or as text, not both. `empty`, when given, is the value of an empty (or blank) body."""
    if empty is not None and (not raw or raw.isspace()):
        return empty
    check_structure(raw, max_depth)
    try:
        text = raw.decode("utf-8")  # strict: invalid UTF-8 and encoded surrogates are refused here
    except UnicodeDecodeError:
        raise _invalid("the body is not valid UTF-8") from None
    del raw
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite,
                           object_pairs_hook=_unique_keys)
    except ValueError as exc:  # JSONDecodeError, our hooks, int digit limit
        kind = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:80]
        raise _invalid(f"malformed JSON ({kind})") from None
    except RecursionError:  # unreachable after check_structure; kept so a 500 can never come from here
        raise _invalid("JSON nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogates(value):  # "\ud800" alone: not storable as UTF-8
        raise _invalid("a string holds a lone UTF-16 surrogate escape")
    return value


def read_json_object(request: Request, *, max_bytes: int, max_depth: int, empty_ok: bool = False
                     ) -> dict[str, Any]:
    """A JSON object body, bounded; `{}` for an empty body when `empty_ok`."""
    value = parse_json(read_body(request, max_bytes), max_depth, empty={} if empty_ok else None)
    if not isinstance(value, dict):
        raise _invalid("the body is not a JSON object", "Send one JSON object ({...}); see GET /openapi.json.")
    return value


def has_lone_surrogate(text: str) -> bool:
    """True when `text` holds a lone surrogate (JSON "\\ud800"): it cannot be stored or logged as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
