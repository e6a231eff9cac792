"""The core model: bluesky semantics over a run source, intake-free.

Read in this order: :mod:`.pages` (event/datum pages), :mod:`.documents`
(run sources built from documents), :mod:`.casting` (dtypes without value
changes), :mod:`.filling` (external data through handlers and stream
readers), :mod:`.rows` (fields, rows aligned by seq_num), :mod:`.eager` and
:mod:`.lazy` (numpy columns, dask graphs), :mod:`.assembly` (a stream's
Dataset, the one entry point), :mod:`.canonical` (the ordered document
stream), :mod:`.follow` (a run being written), :mod:`.run` (the run and
stream model the faces delegate to), :mod:`.lookup` (which run ``cat[key]``
names).
"""
