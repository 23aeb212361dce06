"""Point columns: initial and final points of a batch, stored as one Arrow list column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def point_column(points: np.ndarray) -> pd.arrays.ArrowExtensionArray:
    """Rows of ``points`` (B, n) as one Arrow list column: no Python object per row.

    (A list rather than a fixed-size list: pandas cannot read the latter back from parquet.)
    """
    batch, n = points.shape
    flat = pa.array(np.ascontiguousarray(points, dtype=np.float64).ravel())
    offsets = pa.array(np.arange(0, batch * n + 1, n, dtype=np.int32))
    return pd.arrays.ArrowExtensionArray(pa.ListArray.from_arrays(offsets, flat))


def points(table: pd.DataFrame, column: str = "x") -> np.ndarray:
    """A point column of a trajectory table back as an array of shape (B, n)."""
    values = table[column]
    if isinstance(values.dtype, pd.ArrowDtype):
        arrow = pa.chunked_array(values.array._pa_array).combine_chunks()
        return arrow.flatten().to_numpy().reshape(len(values), -1)
    return np.stack(values.to_numpy())
