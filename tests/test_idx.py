"""ferrax.datasets.idx: round trips, byte layout, and untrusted-file handling."""

import gzip
import io
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ferrax.datasets.idx import read_idx, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
         np.float32: 0x0D, np.float64: 0x0E}


def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


@settings(max_examples=60, deadline=None)
@given(
    arr=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=5, min_side=0,
                                                   max_side=4))),
    gz=st.booleans(),
)
def test_round_trip_every_type_and_rank(tmp_path_factory, arr, gz):
    path = tmp_path_factory.mktemp("rt") / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, arr)
    back = read_idx(path)
    assert back.dtype == arr.dtype and back.dtype.isnative
    assert back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)  # NaNs compare equal here
    assert back.flags.writeable


@pytest.mark.parametrize("dtype", DTYPES)
def test_byte_layout_is_big_endian(tmp_path, dtype):
    arr = np.arange(6, dtype=dtype).reshape(2, 3)
    path = tmp_path / "a.idx"
    write_idx(path, arr)
    raw = path.read_bytes()
    assert raw[:12] == header(CODES[dtype], (2, 3))
    assert raw[12:] == arr.astype(np.dtype(dtype).newbyteorder(">")).tobytes()


def test_high_rank_and_big_endian_input(tmp_path):
    arr = np.arange(2 ** 9, dtype=">i4").reshape((2,) * 9)
    write_idx(tmp_path / "a.idx", arr)
    back = read_idx(tmp_path / "a.idx")
    assert back.dtype == np.int32 and back.shape == (2,) * 9
    np.testing.assert_array_equal(back, arr)
    rank32 = np.zeros((1,) * 32, np.uint8)  # the most every NumPy version supports
    write_idx(tmp_path / "b.idx", rank32)
    assert read_idx(tmp_path / "b.idx").shape == (1,) * 32
    # IDX allows 255 dimensions; NumPy does not: a clear error naming the file.
    (tmp_path / "r255.idx").write_bytes(header(0x08, (1,) * 255) + b"\0")
    with pytest.raises(ValueError, match="r255.idx: 255 dimensions"):
        read_idx(tmp_path / "r255.idx")


def test_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(10, dtype=np.int16)
    write_idx(tmp_path / "a.idx", arr)
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "compressed.idx").write_bytes(gzip.compress(raw))
    (tmp_path / "plain.gz").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed.idx"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), arr)


def test_file_objects(tmp_path):
    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    write_idx(tmp_path / "a.idx.gz", arr)
    write_idx(tmp_path / "a.idx", arr)
    with open(tmp_path / "a.idx.gz", "rb") as f:
        np.testing.assert_array_equal(read_idx(f), arr)
    with open(tmp_path / "a.idx", "rb") as f:
        np.testing.assert_array_equal(read_idx(f), arr)
    np.testing.assert_array_equal(read_idx(io.BytesIO((tmp_path / "a.idx").read_bytes())), arr)
    with gzip.open(tmp_path / "a.idx.gz", "rb") as f:  # an already-decompressing stream
        np.testing.assert_array_equal(read_idx(f), arr)


def test_gz_output_is_deterministic(tmp_path):
    arr = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "b.gz", arr)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_huge_header_is_rejected_without_allocating(tmp_path):
    # Claims 10^6 x 10^6 float64 (8 TB) in a 100-byte file.
    data = header(0x0E, (10**6, 10**6)).ljust(100, b"\0")
    raw = tmp_path / "huge.idx"
    raw.write_bytes(data)
    gz = tmp_path / "huge.idx.gz"
    gz.write_bytes(gzip.compress(data))
    tracemalloc.start()
    try:
        for source in (raw, gz, io.BytesIO(data), _Unsized(gzip.compress(data))):
            with pytest.raises(ValueError, match="truncated|more than a file of this size"):
                read_idx(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    with pytest.raises(ValueError, match="huge.idx"):
        read_idx(raw)


def test_truncated_and_trailing(tmp_path):
    arr = np.arange(50, dtype=np.int32)
    write_idx(tmp_path / "a.idx", arr)
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(raw[:-3])
    (tmp_path / "long.idx").write_bytes(raw + b"\1")
    (tmp_path / "short.idx.gz").write_bytes(gzip.compress(raw[:-3]))
    (tmp_path / "long.idx.gz").write_bytes(gzip.compress(raw + b"\1"))
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-12])
    (tmp_path / "hdr.idx").write_bytes(raw[:6])
    for name, what in [("short.idx", "truncated"), ("long.idx", "trailing"),
                       ("short.idx.gz", "truncated"), ("long.idx.gz", "trailing"),
                       ("cut.gz", "corrupt gzip|truncated"), ("hdr.idx", "truncated header")]:
        with pytest.raises(ValueError, match=what) as e:
            read_idx(tmp_path / name)
        assert name in str(e.value)


def test_corrupt_gzip_crc(tmp_path):
    arr = np.zeros(1000, np.uint8)
    blob = bytearray(gzip.compress(header(0x08, (1000,)) + arr.tobytes()))
    blob[-8] ^= 0xFF  # CRC32 of the payload
    (tmp_path / "crc.gz").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="crc.gz.*corrupt gzip"):
        read_idx(tmp_path / "crc.gz")


@pytest.mark.parametrize("magic", [b"\x12\x34\x08\x01", b"\x00\x00\x0a\x01",
                                   b"\x00\x00\x08\x00", b"\x00\x01\x08\x01"])
def test_wrong_magic(tmp_path, magic):
    path = tmp_path / "bad.idx"
    path.write_bytes(magic + b"\0\0\0\1" + b"\0")
    with pytest.raises(ValueError, match=r"bad\.idx: not an IDX file: magic number 0x"):
        read_idx(path)


def test_too_short(tmp_path):
    (tmp_path / "tiny").write_bytes(b"\0\0")
    with pytest.raises(ValueError, match="tiny: too short"):
        read_idx(tmp_path / "tiny")


def test_write_rejects_what_idx_cannot_hold(tmp_path):
    for bad in (np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.uint16),
                np.zeros(3, np.complex64)):
        with pytest.raises(ValueError, match="cannot store dtype"):
            write_idx(tmp_path / "x.idx", bad)
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "x.idx", np.uint8(3))
    with pytest.raises(TypeError):
        read_idx(12)


class _Unsized(io.RawIOBase):
    """A stream whose size cannot be known in advance."""

    def __init__(self, data):
        self._f = io.BytesIO(data)

    def readable(self):
        return True

    def read(self, n=-1):
        return self._f.read(n)
