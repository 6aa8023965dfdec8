"""Read MXNet's ``.params`` (NDArray list) files in Python, checking every field first.

``mx.nd.load`` trusts the file: a negative ``ndim``, a dimension of ``2**40`` or an array count
of a billion make it allocate or read past the end and crash natively. This reader checks the
header, every array's magic, storage type, rank, dimensions and dtype flag, and that the data
fits in the file, before building numpy arrays; any problem is one :class:`ModelLoadError`.

Layout (little endian): ``uint64 0x112`` magic, ``uint64`` reserved, ``uint64`` array count, the
arrays, ``uint64`` name count, then per name ``uint64`` length and its bytes. An array is
``uint32`` magic ``0xF993FAC9`` (or ``0xF993FACA``, NumPy-shape semantics), ``int32`` storage type,
``int32`` ndim, ``int64`` dims, ``int32`` device type and id, ``int32`` dtype flag, then the data.
Files of MXNet before 0.9 are read too: magic ``0xF993FAC8`` (no storage type), or no magic at
all, the first ``uint32`` being ndim followed by ``uint32`` dims.
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

from common.errors import ModelLoadError

log = logging.getLogger(__name__)

LIST_MAGIC = 0x112
V1_MAGIC, V2_MAGIC, V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
MAX_NDIM = 32
# MXNet type flags this reader turns into numpy arrays (12, bfloat16, is widened to float32).
NUMPY_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64,
                7: np.bool_}
BFLOAT16 = 12
STORAGE_NAMES = {1: "row_sparse", 2: "csr"}


class _Truncated(Exception):
    pass


@dataclass
class ParamsFile:
    """Arrays in file order (``None`` where MXNet saved an array without a shape) and their names
    (empty when the file holds an unnamed list)."""

    arrays: list[Optional[np.ndarray]]
    names: list[str]


class _Reader:
    def __init__(self, data: bytes, file: Optional[str]) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.file = file

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise _Truncated()
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def left(self) -> int:
        return len(self.data) - self.pos

    def bytes(self, count: int) -> memoryview:
        if count > self.left():
            raise _Truncated()
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def fail(self, message: str) -> ModelLoadError:
        return ModelLoadError(message, file=self.file)


def _array(r: _Reader, index: int) -> Optional[np.ndarray]:
    where = f"array {index} (at byte {r.pos})"
    (magic,) = r.take("<I")
    if magic in (V2_MAGIC, V3_MAGIC):
        numpy_shapes = magic == V3_MAGIC
        (stype,) = r.take("<i")
        if stype in STORAGE_NAMES:
            raise r.fail(f"{where} is a sparse ({STORAGE_NAMES[stype]}) array; only dense parameters can be exported")
        if stype != 0:
            raise r.fail(f"{where} has an unknown storage type {stype} (file corrupt?)")
        (ndim,) = r.take("<i")
        if numpy_shapes and ndim == -1:
            return None  # unknown shape: MXNet stores nothing more
        if not 0 <= ndim <= MAX_NDIM:
            raise r.fail(f"{where} has {ndim} dimensions (expected 0..{MAX_NDIM}; file corrupt?)")
        dims = r.take(f"<{ndim}q")
        if numpy_shapes and -1 in dims:
            return None
        if not numpy_shapes and ndim == 0:
            return None  # MXNet's "no shape" array: nothing more is stored
    elif magic == V1_MAGIC:
        (ndim,) = r.take("<i")
        if not 0 <= ndim <= MAX_NDIM:
            raise r.fail(f"{where} has {ndim} dimensions (expected 0..{MAX_NDIM}; file corrupt?)")
        dims = r.take(f"<{ndim}q")
        if ndim == 0:
            return None
    elif magic <= MAX_NDIM:  # before MXNet 0.9: no magic, the first word is ndim, dims are uint32
        ndim = magic
        dims = r.take(f"<{ndim}I")
        if ndim == 0:
            return None
    else:
        raise r.fail(f"{where} does not start with an NDArray magic number (got {magic:#x}; file corrupt?)")
    if any(d < 0 for d in dims):
        raise r.fail(f"{where} has a negative dimension {tuple(dims)} (file corrupt?)")
    r.take("<ii")  # device type and id: parameters are always read onto the CPU
    (flag,) = r.take("<i")
    if flag == BFLOAT16:
        dtype = np.dtype(np.uint16)
    elif flag in NUMPY_DTYPES:
        dtype = np.dtype(NUMPY_DTYPES[flag])
    else:
        raise r.fail(f"{where} has an unknown dtype flag {flag} (MXNet knows 0..7 and 12; file corrupt?)")
    count = 1
    for d in dims:
        count *= d
    nbytes = count * dtype.itemsize
    if nbytes > r.left():
        raise r.fail(f"cannot read MXNet params (truncated or not a .params file: {where} of shape {tuple(dims)} "
                     f"needs {nbytes} bytes, {r.left()} are left)")
    values = np.frombuffer(r.bytes(nbytes), dtype=dtype).reshape(dims).copy()
    if flag == BFLOAT16:
        log.warning("%s is bfloat16; widening it to float32", where)
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values


def read_params_file(data: bytes, file: Optional[str] = None) -> ParamsFile:
    """Parse the bytes of an MXNet NDArray-list file; raise :class:`ModelLoadError` if malformed."""
    r = _Reader(data, file)
    try:
        magic, _reserved, count = r.take("<QQQ")
        if magic != LIST_MAGIC:
            raise r.fail(f"cannot read MXNet params (not a .params file: magic {magic:#x}, expected {LIST_MAGIC:#x})")
        # each array takes at least 4 bytes (a legacy 0-dim one): a larger count is a lie
        if count > r.left() // 4:
            raise r.fail(f"cannot read MXNet params (truncated or not a .params file: it claims {count} arrays "
                         f"in {r.left()} bytes)")
        arrays = [_array(r, i) for i in range(count)]
        (name_count,) = r.take("<Q")
        if name_count not in (0, count):
            raise r.fail(f"cannot read MXNet params (file corrupt: {count} arrays but {name_count} names)")
        names = []
        for i in range(name_count):
            (length,) = r.take("<Q")
            raw = r.bytes(length) if length <= r.left() else None
            if raw is None:
                raise _Truncated()
            try:
                names.append(bytes(raw).decode("utf-8"))
            except UnicodeDecodeError:
                raise r.fail(f"cannot read MXNet params (name {i} is not UTF-8 text; file corrupt?)") from None
    except _Truncated:
        raise r.fail("cannot read MXNet params (truncated or not a .params file: it ends inside "
                     f"{'the header' if r.pos < 24 else 'its data'})") from None
    if r.left():
        log.debug("%s: %d bytes after the parameter names are ignored", file, r.left())
    return ParamsFile(arrays, names)
