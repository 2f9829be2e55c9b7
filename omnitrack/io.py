"""Atomic writes and validated reads of the pipeline's files.

Every file a stage produces is first written under a temporary name in the same directory
and renamed into place, so a killed job never leaves a half-written output behind.
Large arrays are written row by row (:class:`NpyRows`) rather than through a writable memory map,
whose written pages would stay in the process's resident set.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from omnitrack.errors import CacheError


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    Works for files and directories. On failure the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _finite(obj):
    """``obj`` with numpy values as Python ones and NaN / inf floats as None (JSON null)."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj) -> str:
    """Strict JSON (no NaN or Infinity: undefined values are null), keys sorted, ASCII only."""
    return json.dumps(_finite(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj))


def write_json_if_changed(path: str | Path, obj) -> bool:
    """:func:`write_json`, but leave ``path`` (and its modification time) alone when it already holds
    exactly this content. -> whether the file was written."""
    path, text = Path(path), json_text(obj)
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CacheError(path, "file is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CacheError(path, f"is not valid JSON ({e.msg} at line {e.lineno})") from None


def save_npz(path: str | Path, compress: bool = False, **arrays) -> None:
    """Write ``arrays`` to ``path`` (an .npz) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)


def save_npz_if_changed(path: str | Path, **arrays) -> bool:
    """:func:`save_npz`, but leave ``path`` (and its modification time) alone when it already holds
    equal arrays (same names, dtypes, shapes and values). -> whether the file was written."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if set(z.files) == set(arrays) and all(
                z[k].dtype == np.asarray(a).dtype and z[k].shape == np.shape(a) and np.array_equal(z[k], a)
                for k, a in arrays.items()
            ):
                return False
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    save_npz(path, **arrays)
    return True


def load_npz(path: str | Path, spec: dict[str, tuple[int | None, str | None]]) -> dict[str, np.ndarray]:
    """Read the arrays named in ``spec`` from an .npz written by a stage, validating each.

    spec maps a key to (ndim, dtype kind): kind is a numpy ``dtype.kind`` string of accepted
    kinds (e.g. "f", "u", "b", "iu"), or None for any. A missing, truncated or mismatched
    file raises :class:`CacheError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise CacheError(path, "file is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for key, (ndim, kinds) in spec.items():
                if key not in z.files:
                    raise CacheError(path, f"has no array '{key}' (found {sorted(z.files)})")
                a = z[key]
                if ndim is not None and a.ndim != ndim:
                    raise CacheError(path, f"array '{key}' has {a.ndim} dimensions {a.shape}, expected {ndim}")
                if kinds is not None and a.dtype.kind not in kinds:
                    raise CacheError(path, f"array '{key}' has dtype {a.dtype}, expected kind '{kinds}'")
                out[key] = a
            return out
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        if isinstance(e, CacheError):
            raise
        raise CacheError(path, f"is truncated or corrupt ({type(e).__name__}: {e})") from None


def open_npy(path: str | Path, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Memory-map an .npy written by a stage, checking its shape and dtype against its metadata."""
    path = Path(path)
    if not path.exists():
        raise CacheError(path, "file is missing")
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CacheError(path, f"is truncated or corrupt ({e})") from None
    if tuple(a.shape) != tuple(shape) or a.dtype != np.dtype(dtype):
        raise CacheError(path, f"holds {a.dtype} {tuple(a.shape)}, its metadata says {np.dtype(dtype)} {tuple(shape)}")
    return a


def pread_row(fd: int, path: Path, offset: int, k: int, row_shape: tuple[int, ...], dtype) -> np.ndarray:
    """Row k of the .npy behind the open file ``fd`` (data starting at byte ``offset``), read with
    ``os.pread`` (no page of the file stays mapped); a short read is a truncated file (CacheError)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    data = os.pread(fd, nbytes, offset + k * nbytes)
    if len(data) != nbytes:
        raise CacheError(path, f"is truncated (row {k} is incomplete)")
    return np.frombuffer(data, dtype).reshape(row_shape)


class NpyRows:
    """An .npy file of fixed ``shape`` written and read one row (first-axis index) at a time.

    Rows go through ``os.pwrite``/``os.pread``: unlike a writable ``np.memmap``, no page of the file
    stays mapped into the process, so the resident set holds one row however large the file (the
    kernel's page cache is not counted and is reclaimable). Drop-in for
    ``np.lib.format.open_memmap(path, mode="w+", dtype=..., shape=...)`` where whole rows are assigned
    (``a[k] = row``, a scalar fills the row) and read (``a[k]``, a read-only copy).
    """

    def __init__(self, path: str | Path, shape: tuple[int, ...], dtype):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        with open(self.path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            self.offset = f.tell()
            f.truncate(self.offset + self.shape[0] * self.row_bytes)
        self._fd = os.open(self.path, os.O_RDWR)

    def __len__(self) -> int:
        return self.shape[0]

    def _where(self, k) -> int:
        k = int(k)
        if not 0 <= k < self.shape[0]:
            raise IndexError(f"{self.path}: row {k} outside [0, {self.shape[0]})")
        return self.offset + k * self.row_bytes

    def __setitem__(self, k: int, row) -> None:
        row = np.broadcast_to(np.asarray(row).astype(self.dtype, copy=False), self.row_shape)
        os.pwrite(self._fd, np.ascontiguousarray(row).tobytes(), self._where(k))

    def __getitem__(self, k: int) -> np.ndarray:
        self._where(k)
        return pread_row(self._fd, self.path, self.offset, int(k), self.row_shape, self.dtype)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()


def write_csv(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """Write ``rows`` (dicts keyed by ``columns``) as a CSV file, atomically."""
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
