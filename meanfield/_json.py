"""`jsonable`: one converter from arrays, NumPy scalars and paths to JSON values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def jsonable(x, nonfinite: str = "string"):
    """x with arrays as nested lists, NumPy scalars as Python numbers, paths as strings.

    `nonfinite`: how inf / nan floats are written — "string" ("inf", "-inf", "nan": they
    round-trip through `float`) or "null" (JSON null, for consumers that want numbers only).
    """
    if nonfinite not in ("string", "null"):
        raise ValueError(f"`nonfinite` must be 'string' or 'null'; got {nonfinite!r}.")
    if isinstance(x, dict):
        return {str(k): jsonable(v, nonfinite) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, nonfinite) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (np.floating, float)) and not isinstance(x, bool):
        x = float(x)
        if math.isfinite(x):
            return x
        return str(x) if nonfinite == "string" else None
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return jsonable(np.asarray(x).tolist(), nonfinite)
    if isinstance(x, Path):
        return str(x)
    return x
