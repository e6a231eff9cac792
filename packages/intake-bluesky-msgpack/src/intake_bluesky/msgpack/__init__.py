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

from intake_bluesky.core import BlueskyCatalog, FileDriver

from ._format import MsgpackFormat, decode_numpy
from ._writer import MsgpackWriter

# The one version source: the distribution's metadata (pyproject.toml).
__version__ = importlib.metadata.version("intake-bluesky-msgpack")

__all__ = ["BlueskyMsgpackCatalog", "MsgpackFormat", "MsgpackWriter", "decode_numpy"]


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
    index_path : str, path or False, optional
        The on-disk index of the runs' start and stop documents, which lets a
        new process open an unchanged directory without reading any file.
        Default: the ``INTAKE_BLUESKY_INDEX`` environment variable if set (a
        path, or ``off``), else ``file-index.sqlite`` in the user's cache
        directory (``platformdirs.user_cache_dir("intake-bluesky")``). A path
        puts it there; ``False`` keeps the index in memory only.
    handler_registry : dict, optional
        Resource spec -> handler class or dotted name, for external data.
    root_map : dict, optional
        Old root -> new root, for external files that moved.
    query : dict, optional
        A MongoDB query on start documents that pre-filters the catalog.
    transforms : dict, optional
        ``start``/``stop``/``descriptor``/``resource`` -> callable that patches
        those documents on read.
    **kwargs
        Passed to ``intake.catalog.Catalog`` (``name``, ``metadata``, ...).

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
