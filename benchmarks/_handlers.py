"""The handler for the benchmarks' external frames (needs only numpy).

Importable in both environments (this project's and databroker 1.2.5's), so
both read the same ``.npy`` files through the same code. It follows the
handler protocol of databroker and event-model's ``Filler``:
``handler = NpySeqHandler(resource_path_with_root, **resource_kwargs)``, then
``handler(**datum_kwargs)`` returns one frame.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SPEC", "NpySeqHandler"]

#: The resource spec the benchmark workloads use.
SPEC = "NPY_SEQ"


class NpySeqHandler:
    """Frame ``index`` of a sequence is the file ``<resource_path>_<index>.npy``."""

    specs = {SPEC}

    def __init__(self, resource_path, **resource_kwargs):
        self._base = str(resource_path)

    def __call__(self, index):
        return np.load(f"{self._base}_{int(index)}.npy", allow_pickle=False)

    def get_file_list(self, datum_kwarg_gen):
        return [f"{self._base}_{int(kw['index'])}.npy" for kw in datum_kwarg_gen]

    def close(self):
        pass
