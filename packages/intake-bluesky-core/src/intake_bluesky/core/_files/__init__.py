"""What every file backend shares: listing run files, reading their headers
once, the on-disk index, and a driver and run source over any file format.

:mod:`.driver` holds ``FileFormat`` (what a format implements),
``FileDriver`` and ``FileRunSource``; :mod:`.diskindex` is the SQLite index
of start/stop documents that lets a new process skip reading files.
"""
