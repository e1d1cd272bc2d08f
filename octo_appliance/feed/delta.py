"""Binary deltas between two versions of a package: zstd with the older version as a prefix.

A delta is one zstd frame of the new version compressed with the old version as a raw prefix
("patch-from"): every run of bytes the two share becomes a back-reference into the old one, so
a zip with 1% of its files changed shrinks to about that 1%. Long-distance matching finds
those runs across the whole file, and the window covers old + new so nothing is out of reach
(DESIGN.md, "Known pitfalls", has the measurements). The frame carries a content checksum:
applying a delta to a base other than the one it was made from fails instead of producing
wrong bytes (callers still verify the result's SHA-256: it is what the cache is keyed by).

Pure: pyzstd and the standard library only, because the agent imports it. Both sides hold the
old version in memory (zstd needs the prefix as one buffer); the new one is produced in
chunks and streamed to disk, never held whole by :func:`apply_delta`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyzstd
from pyzstd import CParameter, DParameter, ZstdCompressor, ZstdDecompressor, ZstdDict

from octo_appliance.exceptions import OctoError

#: zstd refuses a raw prefix shorter than this; shorter old versions are simply not used
MIN_PREFIX = 8
#: the smallest window zstd accepts; the window grows to cover old + new
MIN_WINDOW_LOG = 10
CHUNK = 1024 * 1024


class DeltaError(OctoError):
    """A delta cannot be applied: corrupt, truncated, made from another base, or too large.

    Callers turn it into their own error (the agent answers ``delta_failed``).
    """


def _prefix(old: bytes) -> ZstdDict | None:
    return ZstdDict(old, is_raw=True) if len(old) >= MIN_PREFIX else None


def _window_log(total: int) -> int:
    """The smallest window that reaches from the end of the new version back to the start of
    the old one (within zstd's limits)."""
    low, high = CParameter.windowLog.bounds()
    return max(low, MIN_WINDOW_LOG, min(high, max(1, total).bit_length()))


def make_delta(old: bytes, new: bytes) -> bytes:
    """The delta that turns ``old`` into ``new`` (CPU-bound: call it in a worker thread)."""
    options: dict[int, int] = {
        CParameter.windowLog: _window_log(len(old) + len(new)),
        CParameter.enableLongDistanceMatching: 1,
        CParameter.checksumFlag: 1,
    }
    prefix = _prefix(old)
    compressor = ZstdCompressor(options, prefix.as_prefix if prefix is not None else None)
    return compressor.compress(new, ZstdCompressor.FLUSH_FRAME)


def apply_delta(
    old_path: str | os.PathLike[str],
    delta_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    max_length: int | None = None,
) -> int:
    """Write the version ``delta_path`` makes from ``old_path`` to ``out_path``; its length.

    Blocking (call it in a worker thread). ``max_length`` stops a delta that would produce
    more than that many bytes before it fills the disk. On any failure ``out_path`` is
    removed and :class:`DeltaError` says why.
    """
    old = Path(old_path).read_bytes()
    prefix = _prefix(old)
    options: dict[int, int] = {DParameter.windowLogMax: DParameter.windowLogMax.bounds()[1]}
    decompressor = ZstdDecompressor(prefix.as_prefix if prefix is not None else None, options)
    written = 0
    try:
        with Path(delta_path).open("rb") as delta, Path(out_path).open("wb") as out:
            while not decompressor.eof:
                data = b"" if not decompressor.needs_input else delta.read(CHUNK)
                if decompressor.needs_input and not data:
                    raise DeltaError("the delta ends before its frame does (truncated)")
                chunk = decompressor.decompress(data, CHUNK)
                written += len(chunk)
                if max_length is not None and written > max_length:
                    raise DeltaError(
                        f"the delta produces more than the expected {max_length} bytes"
                    )
                out.write(chunk)
            if decompressor.unused_data or delta.read(1):
                raise DeltaError("the delta has data after its frame")
    except pyzstd.ZstdError as exc:
        Path(out_path).unlink(missing_ok=True)
        raise DeltaError(f"the delta does not apply to this base: {exc}") from None
    except BaseException:
        Path(out_path).unlink(missing_ok=True)
        raise
    return written


__all__ = ["DeltaError", "apply_delta", "make_delta"]
