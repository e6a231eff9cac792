"""The core model: bluesky semantics over a run source, intake-free.

Read in this order: :mod:`.pages` (event/datum pages) and :mod:`.uids`
(their uids packed), :mod:`.slabs` (the memory their merged columns live
in), :mod:`.documents` (a run held as its documents),
:mod:`.casting` (dtypes without value changes), :mod:`.filling` (external
data through handlers and stream readers), :mod:`.rows`, :mod:`.eager`,
:mod:`.lazy` and :mod:`.assembly` (a stream's rows as an xarray Dataset,
eagerly or with dask), :mod:`.canonical` (the ordered document stream),
:mod:`.follow` (a run being written), :mod:`.lookup` (what a catalog key
names) and :mod:`.run` (the run and stream model the faces delegate to).
"""
