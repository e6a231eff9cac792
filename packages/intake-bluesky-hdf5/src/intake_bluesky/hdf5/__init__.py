"""intake-bluesky-hdf5: stream readers for detector HDF5 files.

Installing this package is all it takes for intake-bluesky to read the data
of ophyd-async detectors (``stream_resource`` documents with mimetype
``application/x-hdf5``): :class:`HDF5StreamReader` is registered in the
``intake_bluesky.stream_readers`` entry point group under that mimetype, so
``run.primary.read()`` and ``to_dask()`` fill those data keys from the files.
Files are opened read-only in SWMR mode (a file still being written is read up
to what is on disk), one handle per file per process; compressed detector
files (bitshuffle/LZ4/blosc) are read through hdf5plugin.

It also ships the run writer ``nexus`` (:class:`NexusWriter`, entry point
group ``intake_bluesky.writers``): ``intake-bluesky export STORE DEST --format
nexus`` writes one NeXus file per run.

Examples
--------
>>> import os, tempfile, h5py, numpy as np
>>> from intake_bluesky.hdf5 import HDF5StreamReader
>>> path = os.path.join(tempfile.mkdtemp(), "det.h5")
>>> with h5py.File(path, "w", libver="latest") as f:
...     _ = f.create_dataset("/entry/sum", data=np.arange(5), maxshape=(None,), chunks=(1024,))
>>> reader = HDF5StreamReader(path, data_key={"shape": [1], "dtype_numpy": "<i8"},
...                           dataset="/entry/sum")
>>> reader(1, 4).ravel().tolist()
[1, 2, 3]
>>> reader.close()
"""

import importlib.metadata

from ._files import open_count
from ._nexus import NexusWriter
from ._reader import MIMETYPE, HDF5StreamReader, UnknownParameterWarning, parse_slice

# The one version source: the distribution's metadata (pyproject.toml).
__version__ = importlib.metadata.version("intake-bluesky-hdf5")

__all__ = [
    "MIMETYPE",
    "HDF5StreamReader",
    "NexusWriter",
    "UnknownParameterWarning",
    "open_count",
    "parse_slice",
]
