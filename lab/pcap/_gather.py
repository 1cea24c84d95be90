"""Byte gathers: one integer per index, read out of a file's bytes with numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def u16(buf: U8, idx: I64, order: str = ">") -> npt.NDArray[np.uint16]:
    """uint16 at each index, in byte order ``order`` (network order by default)."""
    hi, lo = (idx, idx + 1) if order == ">" else (idx + 1, idx)
    return ((buf[hi].astype(np.uint16) << 8) | buf[lo]).astype(np.uint16, copy=False)


def u32(buf: U8, idx: I64, order: str = ">") -> npt.NDArray[np.uint32]:
    """uint32 at each index, in byte order ``order`` (network order by default)."""
    b = [buf[idx + k].astype(np.uint32) for k in range(4)]
    if order == "<":
        b.reverse()
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]).astype(np.uint32, copy=False)
