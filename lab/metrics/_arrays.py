"""Conversions shared by the metric functions: anything array-like to plain numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ArrayIn = npt.ArrayLike | pd.Series | pd.Index


def as_float(values: ArrayIn) -> FloatArray:
    """1-D float64 copy of ``values``; pandas <NA> and None become NaN."""
    if isinstance(values, pd.Series | pd.Index):
        return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    try:
        return np.asarray(values, dtype=np.float64).ravel()
    except TypeError:  # a list holding pd.NA
        objs = list(np.asarray(values, dtype=object).ravel())
        series = pd.Series(objs, dtype="Float64")
        return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def as_int(values: ArrayIn) -> IntArray:
    """1-D int64 array of ``values``; a missing value raises ValueError."""
    if isinstance(values, pd.Series | pd.Index) and values.dtype.kind in "iub":
        return np.asarray(values.to_numpy(dtype=np.int64), dtype=np.int64)
    arr = values if isinstance(values, pd.Series | pd.Index) else np.asarray(values)
    if not isinstance(arr, pd.Series | pd.Index) and arr.dtype.kind in "iub":
        return np.asarray(arr, dtype=np.int64).ravel()
    floats = as_float(values)
    if np.isnan(floats).any():
        raise ValueError("integer input contains missing values")
    return floats.astype(np.int64)


def as_bool(values: ArrayIn) -> BoolArray:
    """1-D bool array of ``values``; missing values count as False."""
    if isinstance(values, pd.Series | pd.Index):
        return np.asarray(values.to_numpy(dtype=np.bool_, na_value=False), dtype=np.bool_)
    array = np.asarray(values)
    if array.dtype == np.bool_:
        return array.ravel()
    # NaN, None and pd.NA are missing (False), as for a Series; bool(nan) would be True
    numbers = as_float(values)
    return np.asarray(np.nan_to_num(numbers, nan=0.0) != 0, dtype=np.bool_)


def _int_with_mask(values: ArrayIn) -> tuple[IntArray, BoolArray] | None:
    """int64 values and a missing-mask when ``values`` is integer typed, else None."""
    if isinstance(values, pd.Series | pd.Index):
        if values.dtype.kind not in "iu":
            return None
        mask = np.asarray(values.isna(), dtype=np.bool_)
        ints = np.asarray(values.to_numpy(dtype=np.int64, na_value=0), dtype=np.int64)
        return ints, mask
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        return None
    return arr.astype(np.int64).ravel(), np.zeros(arr.size, dtype=np.bool_)


def difference(later: ArrayIn, earlier: ArrayIn) -> FloatArray:
    """``later - earlier`` as float64, NaN where either is missing.

    Integer nanosecond timestamps (~1.7e18) are subtracted as int64 first:
    converting them to float64 before subtracting would lose ~256 ns.
    """
    a = _int_with_mask(later)
    b = _int_with_mask(earlier)
    if a is None or b is None:
        return as_float(later) - as_float(earlier)
    out = (a[0] - b[0]).astype(np.float64)
    out[a[1] | b[1]] = np.nan
    return out
