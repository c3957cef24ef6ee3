"""Find an MNIST-like data set, read it, check it: the logic mnist and fashion_mnist share.

Search order: an explicit ``path``; ferrax's cache; copies already on the machine (Keras's
cache, system data directories); a download from the mirrors into ferrax's cache.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from ferrax._typing import PathLike

from . import _store
from ._store import DatasetFileError, DatasetNotFoundError
from .idx import IDX_TYPES, read_idx

# Order of the IDX files and of the returned arrays.
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
GZ_NAMES = tuple(n + ".gz" for n in IDX_NAMES)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

_U8: TypeAlias = npt.NDArray[np.uint8]
# ((x_train, y_train), (x_test, y_test)), as Keras's load_data returns them.
LoadResult: TypeAlias = tuple[tuple[_U8, _U8], tuple[_U8, _U8]]


@dataclass(frozen=True)
class Spec:
    name: str  # cache directory name, e.g. "fashion-mnist"
    title: str  # for messages, e.g. "Fashion-MNIST"
    npz_names: tuple[str, ...]  # single-file forms accepted, Keras's first
    # file name -> accepted SHA-256 digests, the published one first
    sha256: Mapping[str, tuple[str, ...] | str]
    sizes: Mapping[str, int]  # file name -> published size in bytes
    # (base URL, file names fetched from it), tried in order
    mirrors: tuple[tuple[str, tuple[str, ...]], ...]
    counts: tuple[int, int]  # (train, test) images of the real set
    keras: tuple[str, str]  # (subdirectory of Keras's datasets dir, "npz" or "idx")
    hint: str = ""  # extra advice for the not-found message


def load(spec: Spec, path: PathLike | None = None) -> LoadResult:
    if path is not None:
        return _load_explicit(spec, path)
    searched: list[Path] = []
    for d in _store.cache_dirs(spec.name):
        arrays = _load_cache(spec, d)
        if arrays is not None:
            return arrays
        searched.append(d)
    sub, kind = spec.keras
    found: list[tuple[Path, tuple[str, ...]]] = [(d / sub, (kind,))
                                                 for d in _store.keras_dirs()]
    found += [(d, ("idx", "npz")) for d in _store.system_dirs((spec.name,))]
    for d, kinds in found:
        files = _find(d, kinds, spec.npz_names, gz_only=False)
        if files is not None:
            return read_files(files, spec.counts)
        searched.append(d)
    return _download(spec, searched)


def _load_explicit(spec: Spec, path: PathLike) -> LoadResult:
    p = Path(path).expanduser()
    if p.is_dir():
        files = _find(p, ("idx", "npz"), spec.npz_names, gz_only=False)
        if files is None:
            raise DatasetNotFoundError(
                f"path={str(path)!r}: the directory holds neither the four IDX files "
                f"({', '.join(IDX_NAMES)}, each gzipped (.gz) or not) nor "
                f"{' or '.join(spec.npz_names)}"
            )
        return read_files(files, None)
    if p.is_file():
        if not zipfile.is_zipfile(p):
            raise DatasetFileError(f"{p}: not a .npz file; pass path= a Keras-style .npz or a "
                                   "directory holding the four IDX files")
        return read_files([p], None)
    if p.name == str(path) and p.name in spec.npz_names:
        # Keras's load_data(path="mnist.npz") names a file in the cache, not in the
        # working directory: search as if no path had been given.
        return load(spec, None)
    raise DatasetNotFoundError(f"path={str(path)!r} does not exist")


def _load_cache(spec: Spec, d: Path) -> LoadResult | None:
    """The set from cache directory ``d`` if complete there, each file checked by SHA-256."""
    # Only files whose checksums are known can be in the cache.
    npz = tuple(n for n in spec.npz_names if n in spec.sha256)
    files = _find(d, ("idx", "npz"), npz, gz_only=True)
    if files is None:
        return None
    for f in files:
        _store.verify_cached(f, _digests(spec, f.name))
    return read_files(files, spec.counts)


def _find(d: Path, kinds: Sequence[str], npz_names: Sequence[str], gz_only: bool
          ) -> list[Path] | None:
    """The files of a complete set in ``d``: four IDX paths or one npz path, or None."""
    if not d.is_dir():
        return None
    if "idx" in kinds:
        idx: list[Path | None] = []
        for stem in IDX_NAMES:
            options = [d / (stem + ".gz")] if gz_only else [d / (stem + ".gz"), d / stem]
            idx.append(next((p for p in options if p.is_file()), None))
        if all(idx):
            return [p for p in idx if p is not None]
    if "npz" in kinds:
        for name in npz_names:
            if (d / name).is_file():
                return [d / name]
    return None


def _digests(spec: Spec, name: str) -> tuple[str, ...]:
    digests = spec.sha256.get(name)
    if not digests:
        raise DatasetFileError(f"no checksum known for {name}")
    return (digests,) if isinstance(digests, str) else tuple(digests)


def read_files(files: Sequence[Path], counts: Sequence[int] | None) -> LoadResult:
    """Read and check a set; ``counts`` (train, test) is enforced for the real sets only."""
    if len(files) == 1:
        arrays = _read_npz(files[0])
        origin: Sequence[Path] = [files[0]] * 4
    else:
        arrays = [_read_idx(f, rank) for f, rank in zip(files, (3, 1, 3, 1))]
        origin = files
    x_train, y_train, x_test, y_test = arrays
    for x, y, fx, fy in ((x_train, y_train, origin[0], origin[1]),
                         (x_test, y_test, origin[2], origin[3])):
        if x.shape[1:] != IMAGE_SHAPE:
            raise DatasetFileError(f"{fx}: images are {x.shape[1:]}, expected {IMAGE_SHAPE}")
        if len(x) != len(y):
            raise DatasetFileError(f"{fx} holds {len(x)} images but {fy} holds {len(y)} labels")
        if y.size and y.max() >= NUM_CLASSES:
            raise DatasetFileError(f"{fy}: label {int(y.max())} is out of range 0..9")
    if counts is not None and (len(x_train), len(x_test)) != tuple(counts):
        raise DatasetFileError(
            f"{origin[0]}: expected {counts[0]} training and {counts[1]} test images, "
            f"found {len(x_train)} and {len(x_test)}"
        )
    return (x_train, y_train), (x_test, y_test)


def _read_idx(path: Path, rank: int) -> _U8:
    try:
        arr = read_idx(path)
    except ValueError as e:
        raise DatasetFileError(str(e)) from None
    if arr.dtype != np.uint8 or arr.ndim != rank:
        code = next(c for c, dt in IDX_TYPES.items() if dt.newbyteorder("=") == arr.dtype)
        what = "images" if rank == 3 else "labels"
        raise DatasetFileError(
            f"{path}: wrong magic number 0x0000{code:02X}{arr.ndim:02X} ({arr.dtype}, "
            f"{arr.ndim}-D); MNIST {what} have 0x000008{rank:02X} (uint8, {rank}-D)"
        )
    return arr


def _read_npz(path: Path) -> list[_U8]:
    """Read a Keras-style npz without unpickling and without trusting its headers."""
    try:
        with zipfile.ZipFile(path) as z:
            for key in NPZ_KEYS:
                _check_npy_member(z, key + ".npy", path)
        with np.load(path, allow_pickle=False) as f:
            arrays = [f[k] for k in NPZ_KEYS]
    except DatasetFileError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as e:
        raise DatasetFileError(f"{path}: not a valid .npz file ({e})") from None
    out = []
    for key, arr in zip(NPZ_KEYS, arrays):
        rank = 3 if key.startswith("x") else 1
        if arr.ndim != rank or arr.dtype.kind not in "ui":
            raise DatasetFileError(f"{path}: {key} is {arr.dtype} of shape {arr.shape}, "
                                   f"expected {rank}-D uint8")
        if arr.dtype != np.uint8:
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise DatasetFileError(f"{path}: {key} has values outside 0..255")
            arr = arr.astype(np.uint8)
        out.append(arr)
    return out


def _check_npy_member(z: zipfile.ZipFile, member: str, path: Path) -> None:
    """Bound an npz member's declared array size by the bytes the archive really holds."""
    try:
        info = z.getinfo(member)
    except KeyError:
        raise DatasetFileError(f"{path}: no array {member[:-4]!r} in the npz "
                               f"(expected keys {', '.join(NPZ_KEYS)})") from None
    # A deflated member cannot be more than ~1032 times its compressed size.
    if info.file_size > info.compress_size * 1032 + 1024:
        raise DatasetFileError(f"{path}: member {member} claims an impossible size")
    fmt = np.lib.format
    with z.open(info) as m:
        version = fmt.read_magic(m)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(m)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(m)
        else:
            raise DatasetFileError(f"{path}: {member} uses .npy format {version}, "
                                   "expected 1.0 or 2.0")
        header_len = m.tell()
    if dtype.hasobject:
        raise DatasetFileError(f"{path}: {member} holds Python objects; refusing to unpickle")
    nbytes = math.prod(shape) * dtype.itemsize
    if header_len + nbytes != info.file_size:
        raise DatasetFileError(
            f"{path}: {member} is truncated or corrupt: its header says shape {shape} "
            f"({nbytes} bytes) but the member holds {info.file_size - header_len}"
        )


def _download(spec: Spec, searched: list[Path]) -> LoadResult:
    try:
        dest = _store.writable_cache_dir(spec.name)
    except DatasetNotFoundError as e:
        raise DatasetNotFoundError(_not_found(spec, searched, [str(e)])) from None
    failures: list[str] = []
    for base, names in spec.mirrors:
        for name in names:
            target = dest / name
            if target.exists():
                try:
                    _store.verify_cached(target, _digests(spec, name))
                    continue
                except DatasetFileError:
                    pass  # deleted; fetch it again
            try:
                _store.download(base + name, target, _digests(spec, name), spec.sizes.get(name))
            except _store.DOWNLOAD_ERRORS as e:
                failures.append(f"{base}{name}: {e}")
                break
        else:
            kinds = ("npz",) if names[0].endswith(".npz") else ("idx",)
            files = _find(dest, kinds, names, gz_only=True)
            if files is not None:
                return read_files(files, spec.counts)
    raise DatasetNotFoundError(_not_found(spec, searched, failures, dest))


def _not_found(spec: Spec, searched: Sequence[Path], failures: Sequence[str],
               dest: Path | None = None) -> str:
    dest = dest or _store.cache_dirs(spec.name)[0]

    def line(name: str) -> str:
        size = spec.sizes.get(name)
        text = f"{size:>10,} bytes  " if size else ""
        return f"    {name:<28}{text}sha256 {_digests(spec, name)[0]}"

    npz = spec.npz_names[0]
    lines = [f"{spec.title} was not found on this machine and could not be downloaded."]
    if failures:
        lines.append("Download attempts:")
        lines += [f"    {f}" for f in failures]
    lines.append("To use it offline, get these four files:")
    lines += [line(n) for n in GZ_NAMES]
    if npz in spec.sha256:
        lines.append("or this single file:")
        lines.append(line(npz))
    lines.append("from one of:")
    lines += [f"    {base}  ({'the .gz files' if names[0].endswith('.gz') else ', '.join(names)})"
              for base, names in spec.mirrors]
    lines.append(f"and put them in {dest}")
    lines.append("or pass load_data(path=...) a directory holding the IDX files (gzipped or "
                 "not) or a .npz with keys x_train, y_train, x_test, y_test.")
    if spec.hint:
        lines.append(spec.hint)
    lines.append("Also searched: " + ", ".join(str(d) for d in searched))
    return "\n".join(lines)
