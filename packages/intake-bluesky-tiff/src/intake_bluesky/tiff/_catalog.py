"""``BlueskyTiffCatalog``: the core catalog over a bucket of TIFF files."""

from __future__ import annotations

import re
from collections.abc import Mapping

from intake_bluesky.core import BlueskyCatalog, FileDriver, with_catalog_parameters

from ._format import TiffFormat
from ._grouping import Grouping
from ._handler import SPEC, TiffPagesHandler

__all__ = ["BlueskyTiffCatalog"]


@with_catalog_parameters
class BlueskyTiffCatalog(BlueskyCatalog):
    """A bucket of TIFF files as a catalog of bluesky runs.

    Parameters
    ----------
    paths : str, path, glob, directory, or list of them
        Where the TIFF files are (``*.tif``/``*.tiff`` of a directory; explicit
        files whatever their name). Listed again on every access, so new,
        changed and removed files are noticed. Relative paths are made
        absolute.
    group_by : {"directory", "series", "file"} or regular expression
        How files group into runs. ``"directory"`` (default): one run per
        directory. ``"series"``: one run per file-name series such as
        ``sample_00001.tif``, frames ordered by their number. ``"file"``: one
        run per file. A regular expression with a named group ``stem`` (and
        optionally ``index``) matched against file names: one run per stem.
    recursive : bool
        Also look in subdirectories (each directory grouped on its own).
    {index_path_parameter}
    {catalog_parameters}

    Notes
    -----
    The ``TIFF_PAGES`` handler is registered already: ``handler_registry``
    adds handlers or overrides it.
    Opening and searching read only TIFF headers and IFDs (never pixels), once
    per file version, kept in the on-disk index. A run's uid depends on its files' names,
    sizes and mtimes: it is the same on every open and machine, and changes
    when a file of the run changes.

    Examples
    --------
    >>> import os, tempfile, numpy as np, tifffile
    >>> from intake_bluesky.tiff import BlueskyTiffCatalog
    >>> d = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     tifffile.imwrite(os.path.join(d, f"scan_{i}.tif"), np.full((4, 5), i, "uint16"))
    >>> cat = BlueskyTiffCatalog(d)
    >>> run = cat[-1]
    >>> run.metadata["start"]["sample_name"]
    'scan'
    >>> run.primary.read()["image"].shape
    (3, 4, 5)
    """

    # The public path, which intake writes as ``driver:`` in YAML exports and
    # pickle records; the class is re-exported there.
    __module__ = "intake_bluesky.tiff"

    @classmethod
    def guess_can_open(cls, store) -> bool:
        """Whether ``store``, a path, glob or directory, holds ``.tif``/``.tiff`` files."""
        return TiffFormat.guess_can_open(store)

    def __init__(
        self,
        paths,
        *,
        group_by: str | re.Pattern = "directory",
        recursive: bool = False,
        index_path=None,
        handler_registry: Mapping | None = None,
        **common,
    ):
        self.group_by = group_by
        fmt = TiffFormat(Grouping(group_by), recursive=recursive)
        registry = {SPEC: TiffPagesHandler, **(handler_registry or {})}
        driver = FileDriver.for_catalog(self, paths, fmt, index_path)
        super().__init__(driver, handler_registry=registry, **common)
