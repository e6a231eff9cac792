"""Stream data fetched through tiled's array endpoints, chunk by chunk.

When the detector files a run references are not reachable from this
machine, the rows of an external data key are read from the array node
tiled serves for it: a slice of rows per request, and dask chunks that are
whole multiples of the server's chunks along the row axis.

Examples
--------
>>> TiledArrayReader.rows_per_chunk({"chunks": [[2, 2, 1], [240]]})
2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._connect import TiledRef

__all__ = ["TiledArrayReader"]


class TiledArrayReader:
    """Rows ``[start, stop)`` of one array node of a tiled server.

    Parameters
    ----------
    ref : TiledRef
        The container of runs.
    path : list of str
        The node's path below the container: run uid, stream, data key.
    structure : dict
        The node's array structure (``shape``, ``chunks``), as tiled lists it.
    """

    def __init__(self, ref: TiledRef, path: list[str], structure: Mapping[str, Any]) -> None:
        self.ref = ref
        self.path = list(path)
        self.structure = dict(structure)
        self._node: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"ref": self.ref, "path": self.path, "structure": self.structure}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._node = None

    def __repr__(self) -> str:
        return f"TiledArrayReader({self.ref.describe()!r}, {'/'.join(self.path)!r})"

    @staticmethod
    def rows_per_chunk(structure: Mapping[str, Any]) -> int | None:
        """The server's chunk length along the row axis (its first chunk)."""
        chunks = structure.get("chunks") or []
        if not chunks or not chunks[0]:
            return None
        return int(chunks[0][0]) or None

    def _array(self) -> Any:
        if self._node is None:
            node = self.ref.node()
            for part in self.path:
                node = node[part]
            self._node = node
        return self._node

    def __call__(self, start: int, stop: int) -> np.ndarray:
        array = self._array()
        shape = tuple(self.structure.get("shape") or array.shape)
        if stop <= start:
            return np.empty((0, *shape[1:]), dtype=array.dtype)
        return np.asarray(array.read(slice=np.s_[start:stop]))
