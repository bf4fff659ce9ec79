"""Count the frames of a GIF or the pages of a TIFF from the bytes, cheaply and with a bound.

Hand-written on purpose: Pillow's `n_frames` walks *every* frame with no upper bound (for TIFF it parses every
tag of every page, about 40 ms per 60,000-entry directory; for GIF `seek()` decodes the previous frame), and the
web process must never decode pixels or spend unbounded time on a header (docs/api.md, "Limits and accepted
formats"). Both formats have a fixed, decades-old block structure, so counting needs no decoder:

- GIF (GIF89a spec, section 17+): header, logical screen descriptor, optional global colour table, then blocks:
  `0x21` extension (label + data sub-blocks), `0x2C` image descriptor (+ local colour table, LZW code size,
  data sub-blocks), `0x3B` trailer. Every image descriptor is one frame.
- TIFF (TIFF 6.0 section 2; BigTIFF): a chain of image file directories (IFDs); each holds an entry count, the
  entries, and the offset of the next IFD. Every IFD is one page; a loop in the chain ends it.

Both stop counting at `limit + 1`, so a caller can say "more than `limit`" without walking the rest. They never
raise: damaged structure ends the count (the worker's full decode reports real corruption).
"""

from __future__ import annotations

import struct


def gif_frames(data: bytes, limit: int) -> int:
    """Image descriptors in a GIF, counted up to `limit + 1`; at least 1."""
    n = len(data)
    if n < 13:
        return 1
    flags = data[10]
    pos = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
    frames = 0
    while pos < n:
        block = data[pos]
        if block == 0x21:  # extension: introducer, label, then data sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor: 9 bytes after the separator
            frames += 1
            if frames > limit or pos + 10 > n:
                break
            packed = data[pos + 9]
            pos += 10 + ((3 << ((packed & 7) + 1)) if packed & 0x80 else 0)
            pos = _skip_sub_blocks(data, pos + 1)  # LZW minimum code size, then data sub-blocks
        else:  # 0x3B trailer, or garbage after the last frame
            break
    return max(frames, 1)


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos


def tiff_pages(data: bytes, limit: int) -> int:
    """IFDs in a classic or BigTIFF chain, counted up to `limit + 1`; at least 1."""
    if len(data) < 16:
        return 1
    order = "<" if data[:2] == b"II" else ">"
    pages = 0
    try:
        (version,) = struct.unpack_from(order + "H", data, 2)
        if version == 43:  # BigTIFF: 8-byte offsets, 8-byte entry counts, 20-byte entries
            count_fmt, offset_fmt, entry_size = "Q", "Q", 20
            (offset,) = struct.unpack_from(order + "Q", data, 8)
        else:
            count_fmt, offset_fmt, entry_size = "H", "I", 12
            (offset,) = struct.unpack_from(order + "I", data, 4)
        count_size = struct.calcsize(count_fmt)
        seen: set[int] = set()
        while offset and offset not in seen and offset + count_size <= len(data):
            seen.add(offset)
            pages += 1
            if pages > limit:
                break
            (entries,) = struct.unpack_from(order + count_fmt, data, offset)
            (offset,) = struct.unpack_from(order + offset_fmt, data, offset + count_size + entries * entry_size)
    except struct.error:  # the chain runs off the end of the file: count what was there
        pass
    return max(pages, 1)
