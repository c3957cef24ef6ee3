"""Read and write IDX files, the format MNIST and Fashion-MNIST ship in.

An IDX file is a 4-byte magic number (two zero bytes, an element-type code, the number of
dimensions), one big-endian uint32 per dimension, then the elements in C order, big-endian.
Gzip is detected from the first two bytes (1f 8b), never from the file name.

Files are untrusted input: the size a header claims is checked against the bytes that are
really there before anything is allocated, and gzip streams are read no further than the
header says plus one byte.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from ferrax._typing import PathLike

__all__ = ["IDX_TYPES", "read_idx", "write_idx"]

# Element-type code -> big-endian dtype, as in LeCun's description of the format.
IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {(dt.kind, dt.itemsize): code for code, dt in IDX_TYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than about 1032:1, so a gzip file of C bytes cannot
# hold more than this many bytes of payload; a header claiming more is a lie.
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 22


def read_idx(source: PathLike | IO[bytes]) -> np.ndarray:
    """Read one IDX array from a path or a binary file object (gzipped or not).

    Returns a writable array in native byte order whose shape is the header's dimensions.
    Raises ValueError, naming the file, for a bad magic number, an unknown element type, a
    header whose sizes do not match the data (truncated or trailing bytes), or a corrupt
    gzip stream; FileNotFoundError / OSError as ``open`` does.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(name, "rb") as f:
            return _read(f, name)
    if not hasattr(source, "read"):
        raise TypeError(
            f"read_idx expects a path or a binary file object, got {type(source).__name__}"
        )
    return _read(source, str(getattr(source, "name", "<file object>")))


def _read(f: Any, name: str) -> np.ndarray:
    size = _remaining_size(f)
    head = _read_upto(f, 2)
    if head == _GZIP_MAGIC:
        # The gzip reader needs to see the magic bytes again.
        # _Prepend has no seek(): GzipFile only seeks to rewind, which is never done here.
        stream = gzip.GzipFile(fileobj=_Prepend(head, f), mode="rb")  # type: ignore[call-overload]
        limit = None if size is None else size * _MAX_DEFLATE_RATIO + 1024
        try:
            return _parse(stream, name, limit, exact=False)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{name}: corrupt gzip data ({e})") from None
    return _parse(_Prepend(head, f), name, size, exact=True)


def _parse(f: Any, name: str, limit: int | None, exact: bool) -> np.ndarray:
    """Parse header and data from ``f``; ``limit`` bounds the bytes the stream can hold."""
    magic = _read_upto(f, 4)
    if len(magic) < 4:
        raise ValueError(f"{name}: too short to be an IDX file ({len(magic)} bytes)")
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_TYPES or magic[3] == 0:
        raise ValueError(
            f"{name}: not an IDX file: magic number 0x{magic.hex()} (expected 00 00, "
            f"a type code in {{{', '.join(f'0x{c:02X}' for c in IDX_TYPES)}}}, "
            f"then 1..255 dimensions)"
        )
    dtype = IDX_TYPES[magic[2]]
    ndim = magic[3]
    raw_dims = _read_upto(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(f"{name}: truncated header: {ndim} dimensions announced, "
                         f"only {len(raw_dims)} of {4 * ndim} header bytes present")
    dims = tuple(int.from_bytes(raw_dims[i:i + 4], "big") for i in range(0, 4 * ndim, 4))
    try:
        np.empty((0,) * ndim, dtype=np.uint8)
    except ValueError:
        # IDX allows 255 dimensions, NumPy fewer (32 before 2.0, 64 since).
        raise ValueError(f"{name}: {ndim} dimensions, more than NumPy supports") from None
    nbytes = math.prod(dims) * dtype.itemsize
    header = 4 + 4 * ndim
    what = f"header says shape {dims} of {dtype.newbyteorder('=').name}, {nbytes} bytes of data"
    if limit is not None:
        available = limit - header
        if exact and nbytes != available:
            problem = "truncated" if nbytes > available else "has trailing bytes"
            raise ValueError(f"{name}: {problem}: {what}, file has {max(available, 0)}")
        if nbytes > available:
            raise ValueError(f"{name}: {what}, more than a file of this size can hold")
    buf = _read_upto(f, nbytes)
    if len(buf) < nbytes:
        raise ValueError(f"{name}: truncated: {what}, only {len(buf)} present")
    if f.read(1):
        raise ValueError(f"{name}: has trailing bytes: {what}, but more data follows")
    arr = np.frombuffer(buf, dtype=dtype).reshape(dims)
    if not dtype.isnative:
        # Swap the bytes in place, then reinterpret: no second copy of the data.
        arr = arr.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return arr


def write_idx(path: PathLike, array: npt.ArrayLike) -> None:
    """Write ``array`` to ``path`` as IDX; gzip it when the name ends in ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (any byte order); rank
    1..255, each dimension below 2**32. Raises ValueError otherwise.
    """
    arr = np.asarray(array)
    code = _CODE_OF.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"write_idx: IDX cannot store dtype {arr.dtype}; use one of uint8, int8, int16, "
            f"int32, float32, float64 (e.g. array.astype(np.int32))"
        )
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1 to 255 dimensions, got {arr.ndim}")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"write_idx: dimension too large for IDX in shape {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    data = np.ascontiguousarray(arr, dtype=IDX_TYPES[code]).tobytes()
    name = os.fspath(path)
    if name.endswith(".gz"):
        # mtime=0 and no embedded name: the same array always gives the same bytes.
        with open(name, "wb") as raw, gzip.GzipFile(
            filename="", fileobj=raw, mode="wb", mtime=0
        ) as gz:
            gz.write(header)
            gz.write(data)
    else:
        Path(name).write_bytes(header + data)


def _remaining_size(f: Any) -> int | None:
    """Bytes left in ``f`` from its current position, or None if that cannot be known.

    Only trusted for plain files and in-memory buffers: a decompressing wrapper's fileno()
    belongs to the compressed file, so its size says nothing about what ``read`` returns.
    """
    try:
        if isinstance(f, (io.BufferedReader, io.BufferedRandom, io.FileIO)):
            return os.fstat(f.fileno()).st_size - f.tell()
        if isinstance(f, io.BytesIO):
            return f.getbuffer().nbytes - f.tell()
    except (OSError, ValueError):
        pass
    return None


def _read_upto(f: Any, n: int) -> bytearray:
    """Read up to ``n`` bytes; memory grows with the data actually read, not with ``n``."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(n - len(buf), _CHUNK))
        if not chunk:
            break
        buf += chunk
    return buf


class _Prepend:
    """A read-only stream: ``head`` followed by the rest of ``f``."""

    def __init__(self, head: bytes | bytearray, f: Any) -> None:
        self._head = bytes(head)
        self._f = f

    def read(self, n: int | None = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                out, self._head = self._head + self._f.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += self._f.read(n - len(out))
            return out
        return self._f.read(n)
