"""numpy and tuples to plain JSON values, for printing documents."""

from __future__ import annotations

import numpy as np

__all__ = ["to_json"]


def to_json(value):
    """``value`` with numpy arrays/scalars as lists/numbers, tuples as lists."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
