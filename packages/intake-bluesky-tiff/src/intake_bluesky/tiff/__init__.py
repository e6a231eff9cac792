"""intake-bluesky-tiff: a bucket of TIFF files as bluesky runs.

Data not produced by bluesky (a directory of detector or microscope TIFFs) is
retrofitted into the bluesky data model: each group of files (a directory, or
a file-name series) is a run whose every page is an event of stream
``primary``, data key ``image``, with the pixels read lazily through
tifffile. Start and stop documents are synthesized from file names, mtimes and
TIFF tags; uids are deterministic.

It also ships the stream readers of areaDetector file series written under
ophyd-async: :class:`MultipartTiffReader` (``multipart/related;type=image/tiff``)
and :class:`MultipartJpegReader` (``...type=image/jpeg``, with the ``jpeg``
extra), registered in the ``intake_bluesky.stream_readers`` entry point group.

Examples
--------
>>> import os, tempfile, numpy as np, tifffile
>>> from intake_bluesky.tiff import BlueskyTiffCatalog
>>> bucket = tempfile.mkdtemp()
>>> for i in (1, 2, 10):
...     tifffile.imwrite(os.path.join(bucket, f"ni_{i}.tif"), np.full((2, 3), i, "uint8"))
>>> cat = BlueskyTiffCatalog(bucket, group_by="series")
>>> run = cat[-1]
>>> run.metadata["start"]["files"]
['ni_1.tif', 'ni_2.tif', 'ni_10.tif']
>>> run.primary.read()["image"].values[:, 0, 0].tolist()
[1, 2, 10]
>>> [name for name, doc in run.canonical(fill="no")][:4]
['start', 'descriptor', 'resource', 'datum_page']
"""

import importlib.metadata

from ._catalog import BlueskyTiffCatalog
from ._format import MixedFramesError, TiffFormat, TiffSkippedWarning, run_uid
from ._grouping import SERIES_PATTERN, Grouping, natural_key
from ._handler import SPEC, TiffPagesHandler, TiffReadError
from ._multipart import (
    JPEG_MIMETYPE,
    TIFF_MIMETYPE,
    MultipartJpegReader,
    MultipartTiffReader,
    UnknownParameterWarning,
    entry_point_name,
    file_name,
)

# The one version source: the distribution's metadata (pyproject.toml).
__version__ = importlib.metadata.version("intake-bluesky-tiff")

__all__ = [
    "JPEG_MIMETYPE",
    "SERIES_PATTERN",
    "SPEC",
    "TIFF_MIMETYPE",
    "BlueskyTiffCatalog",
    "Grouping",
    "MixedFramesError",
    "MultipartJpegReader",
    "MultipartTiffReader",
    "TiffFormat",
    "TiffPagesHandler",
    "TiffReadError",
    "TiffSkippedWarning",
    "UnknownParameterWarning",
    "entry_point_name",
    "file_name",
    "natural_key",
    "run_uid",
]
