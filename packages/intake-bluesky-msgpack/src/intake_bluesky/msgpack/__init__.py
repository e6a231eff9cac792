"""intake-bluesky-msgpack: runs written by suitcase-msgpack, as intake catalogs.

Each run is one file, ``<start uid>.msgpack``: a concatenation of msgpack
``[name, doc]`` records in emission order, every event a 1-row
``event_page``, every datum a 1-row ``datum_page``, numpy arrays encoded by
msgpack-numpy. Reading keeps dtypes and shapes and merges the 1-row pages
back into columns.

Examples
--------
>>> import tempfile, msgpack, msgpack_numpy, numpy as np, event_model
>>> from intake_bluesky.msgpack import BlueskyMsgpackCatalog
>>> directory = tempfile.mkdtemp()
>>> bundle = event_model.compose_run()
>>> desc = bundle.compose_descriptor(name="primary", data_keys={
...     "img": {"source": "sim", "dtype": "array", "shape": [2, 3], "dtype_numpy": "<u2"}})
>>> events = [desc.compose_event(data={"img": np.full((2, 3), i, "uint16")},
...                              timestamps={"img": 0.0}, seq_num=i + 1) for i in range(4)]
>>> with open(f"{directory}/{bundle.start_doc['uid']}.msgpack", "wb") as f:
...     for name, doc in [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc),
...                       *[("event_page", event_model.pack_event_page(e)) for e in events],
...                       ("stop", bundle.compose_stop())]:
...         _ = f.write(msgpack.packb([name, doc], default=msgpack_numpy.encode))
>>> cat = BlueskyMsgpackCatalog(directory)
>>> img = cat[-1].primary.read()["img"]
>>> img.shape, img.dtype.name, img.values[:, 0, 0].tolist()
((4, 2, 3), 'uint16', [0, 1, 2, 3])
"""

import importlib.metadata

from intake_bluesky.core import BlueskyCatalog, FileDriver, with_catalog_parameters

from ._format import MsgpackFormat, decode_numpy
from ._writer import MsgpackWriter

# The one version source: the distribution's metadata (pyproject.toml).
__version__ = importlib.metadata.version("intake-bluesky-msgpack")

__all__ = ["BlueskyMsgpackCatalog", "MsgpackFormat", "MsgpackWriter", "decode_numpy"]


@with_catalog_parameters
class BlueskyMsgpackCatalog(BlueskyCatalog):
    """A catalog of the bluesky runs in msgpack files (suitcase-msgpack).

    Parameters
    ----------
    paths : str, path, glob, directory, or list of them
        Where the ``.msgpack`` run files are (a directory contributes the
        files ending in ``.msgpack``; files named explicitly are taken
        whatever their name). Listed again on every access, so runs written
        after the catalog was opened appear and deleted ones disappear.
        Relative paths are made absolute.
    {index_path_parameter}
    {catalog_parameters}

    Notes
    -----
    Indexing a file reads only its first record and the end of the file
    (to find the stop record), once per file version (size and mtime), kept
    in the on-disk index. A file being written (no stop record, possibly a
    truncated last record) is a run in progress; reading it again parses only
    the records appended since, and ``run.follow()`` yields them as written.

    Examples
    --------
    >>> import tempfile
    >>> cat = BlueskyMsgpackCatalog(tempfile.mkdtemp())
    >>> len(cat)
    0
    """

    @classmethod
    def guess_can_open(cls, store) -> bool:
        """Whether ``store``, a path, glob or directory, holds ``.msgpack`` files."""
        return MsgpackFormat.guess_can_open(store)

    def __init__(self, paths, *, index_path=None, **common):
        driver = FileDriver.for_catalog(self, paths, MsgpackFormat(), index_path)
        super().__init__(driver, **common)
