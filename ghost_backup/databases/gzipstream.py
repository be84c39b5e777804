"""The gzip stream the supervisor writes (dump) or reads (restore), with running figures.

Stateful but effect-free: :class:`Compressor` and :class:`Decompressor` only transform bytes,
count them, hash the stored side and keep the last bytes of the SQL side (where a dump's
``-- Dump completed`` line is).
"""

from __future__ import annotations

import hashlib
import zlib

_GZIP_WBITS = 31  # zlib's gzip container (header + CRC-32 + size trailer)
_TAIL = 256


class Compressor:
    """gzip-compress a dump; ``tail`` is the end of the uncompressed input."""

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        self._sha = hashlib.sha256()
        self.tail = b""
        self.stored_bytes = 0

    def _out(self, data: bytes) -> bytes:
        self._sha.update(data)
        self.stored_bytes += len(data)
        return data

    def feed(self, chunk: bytes) -> bytes:
        """Return the compressed bytes for ``chunk`` (possibly none yet)."""
        self.tail = (self.tail + chunk)[-_TAIL:]
        return self._out(self._z.compress(chunk))

    def finish(self) -> bytes:
        """Return the rest of the stream and the gzip trailer."""
        return self._out(self._z.flush())

    @property
    def sha256(self) -> str:
        """Return the SHA-256 of the stored (compressed) bytes so far."""
        return self._sha.hexdigest()


class Decompressor:
    """gunzip a stored dump; ``complete`` once the gzip trailer (CRC, size) checked out."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(_GZIP_WBITS)
        self.tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """Return the uncompressed bytes for ``chunk``; raise ValueError on corrupt data."""
        if self._z.eof:
            if chunk.strip(b"\0"):
                raise ValueError("data after the end of the gzip stream")
            return b""
        try:
            data = self._z.decompress(chunk)
        except zlib.error as err:
            raise ValueError(f"corrupt gzip stream ({err})") from None
        self.tail = (self.tail + data)[-_TAIL:]
        return data

    def finish(self) -> bytes:
        """Return nothing more (the caller checks :attr:`complete` first)."""
        return b""

    @property
    def complete(self) -> bool:
        """Return True once the whole gzip stream, trailer included, was read."""
        return self._z.eof
