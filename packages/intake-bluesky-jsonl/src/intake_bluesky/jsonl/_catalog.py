"""The catalog of runs stored as JSONL files."""

from __future__ import annotations

from intake_bluesky.core import BlueskyCatalog, FileDriver, with_catalog_parameters

from ._format import JSONLFormat

__all__ = ["BlueskyJSONLCatalog"]


@with_catalog_parameters
class BlueskyJSONLCatalog(BlueskyCatalog):
    """A catalog of bluesky runs saved as JSONL files (suitcase-jsonl).

    Parameters
    ----------
    paths : str, path, glob, directory, or list of them
        Where the ``.jsonl`` run files are: a file, a glob such as
        ``"data/*.jsonl"``, a directory (its ``*.jsonl`` files), or a list of
        those. Listed again on every access, so runs written, changed or
        deleted after opening are noticed. Relative paths are made absolute.
    {index_path_parameter}
    {catalog_parameters}

    See Also
    --------
    intake_bluesky.core.BlueskyCatalog : search, lookup and the run model.

    Notes
    -----
    Opening reads only the first and last line of each file, once per file
    version (size and modification time), kept in the on-disk index; later
    accesses stat only the directories and the files of runs in progress
    (see the backend guide for what is noticed when). A run being written (no stop line
    yet, possibly a partial last line) is listed with ``stop`` None and shows
    its new events when read again (only the appended lines are parsed);
    ``run.follow()`` yields its documents as they are written.

    Examples
    --------
    >>> import tempfile
    >>> cat = BlueskyJSONLCatalog(tempfile.mkdtemp())
    >>> len(cat)
    0
    """

    # The public path, which intake writes as ``driver:`` in YAML exports and
    # pickle records; the class is re-exported there.
    __module__ = "intake_bluesky.jsonl"

    @classmethod
    def guess_can_open(cls, store) -> bool:
        """Whether ``store``, a path, glob or directory, holds ``.jsonl`` files."""
        return JSONLFormat.guess_can_open(store)

    def __init__(self, paths, *, index_path=None, **common):
        driver = FileDriver.for_catalog(self, paths, JSONLFormat(), index_path)
        super().__init__(driver, **common)
