"""Nasty inputs for the bad-input corpus (tests/e2e/test_bad_input_corpus.py), all generated here with Pillow or by
hand (header bombs, chunk bombs, polyglots), plus raw-socket HTTP for requests `requests` refuses to send.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import random
import socket
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PNG = (FIXTURES / "chelsea.png").read_bytes()
JPEG = (FIXTURES / "rocket.jpg").read_bytes()


def save(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    return Image.open(FIXTURES / "chelsea.png").convert("RGB").resize(size)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_chunks(*chunks: bytes, size: tuple[int, int] = (32, 32)) -> bytes:
    """A valid PNG with extra chunks placed before its pixel data (where Image.open reads them)."""
    data = save(photo(size), "PNG")
    at = data.index(b"IDAT") - 4
    return data[:at] + b"".join(chunks) + data[at:]


def png_header_bomb(width: int, height: int) -> bytes:
    """A few hundred bytes whose IHDR claims width × height RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


def gif_frames(frames: int, size: tuple[int, int] = (8, 8)) -> bytes:
    images = [Image.new("P", size, i % 256) for i in range(frames)]
    return save(images[0], "GIF", save_all=True, append_images=images[1:], duration=10, optimize=False)


def apng_claiming(frames: int) -> bytes:
    """A 2-frame APNG whose acTL chunk claims `frames` frames (CRC fixed)."""
    data = bytearray(save(Image.new("RGB", (8, 8), "red"), "PNG", save_all=True,
                          append_images=[Image.new("RGB", (8, 8), "blue")]))
    at = data.index(b"acTL")
    data[at + 4: at + 8] = struct.pack(">I", frames)
    data[at + 12: at + 16] = struct.pack(">I", zlib.crc32(bytes(data[at: at + 12])))
    return bytes(data)


def tiff_chain(pages: int) -> bytes:
    """A little-endian TIFF of `pages` minimal 1×1 IFDs."""
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for page in range(pages):
        entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (262, 3, 1, 1), (273, 4, 1, 0), (279, 4, 1, 1)]
        ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
        out += ifd + struct.pack("<I", len(out) + len(ifd) + 4 if page < pages - 1 else 0)
    return bytes(out)


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(save(Image.new("RGB", (16, 16)), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5: at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(save(Image.new("RGB", (16, 16)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def webp_canvas(width: int, height: int) -> bytes:
    """An extended WebP header (VP8X + ANIM) claiming a width × height canvas, with no frame."""
    vp8x = (b"VP8X" + struct.pack("<I", 10) + bytes([0x02, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
            + (height - 1).to_bytes(3, "little"))
    body = b"WEBP" + vp8x + b"ANIM" + struct.pack("<I", 6) + b"\0" * 6
    return b"RIFF" + struct.pack("<I", len(body)) + body


def damaged_idat() -> bytes:
    """A PNG whose compressed pixel data is damaged but whose chunk CRCs are valid."""
    data = bytearray(save(photo(), "PNG"))
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4: at])[0]
    data[at + 14: at + 44] = b"\xff" * 30
    data[at + 4 + length: at + 8 + length] = struct.pack(">I", zlib.crc32(bytes(data[at: at + 4 + length])))
    return bytes(data)


def zip_bytes() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("payload.html", "<script>alert(1)</script>")
    return out.getvalue()


def noise_png(size: tuple[int, int], seed: int = 7) -> bytes:
    image = Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))
    return save(image, "PNG", compress_level=1)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def json_body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = "nanoedit-corpus") -> tuple[bytes, str]:
    """A multipart body from (name, value, filename or None) parts, written by hand so that duplicate names,
    raw invalid UTF-8 and part counts are exactly what the test says."""
    out = io.BytesIO()
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode())
        if filename:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + value + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def raw_http(port: int, head: str, body: bytes = b"", *, half_close: bool = False,
             timeout_s: float = 30) -> tuple[int, dict[str, Any]]:
    """Send exactly these bytes (a request line and headers that may lie) and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        data = resp.read()
    return resp.status, json.loads(data) if data.startswith(b"{") else {"raw": data[:200].decode("latin-1")}
