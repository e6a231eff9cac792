"""What every file backend shares.

Read in this order: :mod:`.format` (``FileFormat``, what a format
implements), :mod:`.listing` (finding run files; directories listed again
only when they change), :mod:`.headers` (each file's start and stop, read
once per file version), :mod:`.diskindex` (the SQLite index that lets a new
process skip reading files), :mod:`.runsource` (one run file as a run source,
read incrementally as it grows) and :mod:`.driver` (``FileDriver``: search,
lookup and listing over all of them).
"""
