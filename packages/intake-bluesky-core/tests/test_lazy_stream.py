"""to_dask() of stream data: slices read only the rows they select, and a
whole compute returns the buffer its chunks were read into (no joining copy).

Reads are counted by an instrumented stream reader, not timed.
"""

import pickle
import threading

import dask
import numpy as np
import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog, DtypeMismatchError
from intake_bluesky.core.testing import STREAM_UIDS, stream_runs
from intake_bluesky.core.testing._examples import EXTERNAL_ROOT
from intake_bluesky.core.testing._examples_streams import NPZ_MIMETYPE, NpzFramesReader, frames


class CountingReader(NpzFramesReader):
    """Records every range of rows asked for, and how (call or read_into)."""

    calls: list = []
    lock = threading.Lock()

    def __call__(self, start, stop):
        with CountingReader.lock:
            CountingReader.calls.append(("call", start, stop))
        return super().__call__(start, stop)


class CountingIntoReader(CountingReader):
    """The same, with read_into: rows written straight into the caller's buffer."""

    buffers: list = []

    def read_into(self, start, stop, out):
        with CountingReader.lock:
            CountingReader.calls.append(("into", start, stop))
            CountingIntoReader.buffers.append(out)
        out[...] = NpzFramesReader.__call__(self, start, stop)
        return True


@pytest.fixture
def catalog(tmp_path, request):
    reader = getattr(request, "param", CountingReader)
    cat = BlueskyInMemoryCatalog(
        handler_registry={NPZ_MIMETYPE: reader}, root_map={EXTERNAL_ROOT: str(tmp_path)}
    )
    for docs in stream_runs(tmp_path):
        cat.ingest(docs)
    CountingReader.calls = []
    CountingIntoReader.buffers = []
    return cat


def rows_read():
    return sum(stop - start for _, start, stop in CountingReader.calls)


def test_a_slice_reads_only_its_rows(catalog):
    stream = catalog[STREAM_UIDS["fly"]].primary  # 7 rows, one file
    lazy = stream.to_dask(chunks=4)  # chunks of 4 and 3 rows
    assert lazy["bdet"].data.chunks[0] == (4, 3)
    with dask.config.set(scheduler="sync"):
        one = lazy["bdet"][5:6].compute()
    np.testing.assert_array_equal(one.values[:, 0], frames(7, 3)[5:6])
    assert CountingReader.calls == [("call", 5, 6)]


@pytest.mark.parametrize(
    "index, most",
    [
        (2, 1),  # an integer drops the axis
        (-1, 1),
        (slice(1, 6, 2), 5),  # a step reads the span, keeps the picked rows
        # dask itself takes these from whole chunks (it fuses no such slice).
        (slice(6, 0, -3), None),
        ([0, 2], None),
    ],
)
def test_indexing_forms_give_the_eager_values(catalog, index, most):
    stream = catalog[STREAM_UIDS["fly"]].primary
    eager = stream.read()["bdet"].values
    lazy = stream.to_dask()["bdet"].data
    CountingReader.calls = []
    with dask.config.set(scheduler="sync"):
        got = lazy[index].compute()
    np.testing.assert_array_equal(got, eager[index])
    if most is not None:
        assert rows_read() == most


def test_a_slice_across_files_reads_each_file_once(catalog):
    stream = catalog[STREAM_UIDS["rollover"]].primary  # rows 1-3 in one file, 4-6 in another
    eager = stream.read()["bdet"].values
    CountingReader.calls = []
    with dask.config.set(scheduler="sync"):
        got = stream.to_dask()["bdet"][2:5].compute().values
    np.testing.assert_array_equal(got, eager[2:5])
    assert rows_read() == 3 and len(CountingReader.calls) == 2


@pytest.mark.parametrize("catalog", [CountingIntoReader], indirect=True)
def test_a_whole_compute_returns_the_buffer_the_chunks_were_read_into(catalog):
    stream = catalog[STREAM_UIDS["fly"]].primary
    eager = stream.read()["bdet"].values
    CountingReader.calls = []
    CountingIntoReader.buffers = []
    lazy = stream.to_dask(chunks=3)["bdet"].data  # chunks 3, 3, 1
    got = lazy.compute()
    np.testing.assert_array_equal(got, eager)
    assert sorted(c for c in CountingReader.calls) == [
        ("into", 0, 3),
        ("into", 3, 6),
        ("into", 6, 7),
    ]
    # Every chunk was read into the array returned: no copy joined them.
    assert all(np.shares_memory(got, out) for out in CountingIntoReader.buffers)
    # A second compute gets arrays of its own: the first one's values stay.
    kept = got.copy()
    again = lazy.compute()
    again[...] = 0
    np.testing.assert_array_equal(got, kept)
    assert not np.shares_memory(got, again)


@pytest.mark.parametrize("catalog", [CountingIntoReader], indirect=True)
def test_chunks_computed_apart_never_share_a_region(catalog):
    stream = catalog[STREAM_UIDS["fly"]].primary
    eager = stream.read()["bdet"].values
    lazy = stream.to_dask(chunks=3)["bdet"].data
    first = lazy.blocks[0].compute()
    first_values = first.copy()
    whole = lazy.compute()  # reads chunk 0 again: into a new buffer
    second = lazy.blocks[0].compute()
    second[...] = 0
    np.testing.assert_array_equal(first, first_values)
    np.testing.assert_array_equal(whole, eager)


def test_a_whole_compute_with_a_reader_without_read_into(catalog):
    stream = catalog[STREAM_UIDS["multi"]].primary  # 3 frames per row
    eager = stream.read()
    lazy = stream.to_dask(chunks=2)
    with dask.config.set(scheduler="threads"):
        computed = lazy.compute()
    for key in ("bdet", "bdet-sum"):
        np.testing.assert_array_equal(computed[key].values, eager[key].values)
        assert computed[key].dtype == eager[key].dtype


def test_rows_that_do_not_fit_the_dtype_are_refused_at_compute(catalog):
    stream = catalog[STREAM_UIDS["fly"]].primary
    lazy = stream.to_dask(dtypes={"bdet": "u1"})  # the frames hold values up to 60000
    with pytest.raises(DtypeMismatchError, match="bdet"):
        lazy["bdet"].data.compute()
    with pytest.raises(DtypeMismatchError, match="bdet"):
        lazy["bdet"][1:2].data.compute()


def test_the_lazy_array_pickles_and_computes_elsewhere(catalog):
    stream = catalog[STREAM_UIDS["fly"]].primary
    eager = stream.read()["bdet"].values
    lazy = stream.to_dask(chunks=3)["bdet"].data
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(lazy)).compute(), eager)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(lazy[4:5])).compute(), eager[4:5])


def test_the_rows_object_reads_the_span_of_any_index(catalog):
    """What dask does not fuse, a direct index of the rows object still
    bounds: the span of the rows picked."""
    stream = catalog[STREAM_UIDS["fly"]].primary
    eager = stream.read()["bdet"].values
    graph = dict(stream.to_dask()["bdet"].data.__dask_graph__())
    (rows,) = [v for k, v in graph.items() if isinstance(k, str)]
    for index, span in (
        ((slice(6, 0, -3),), 4),
        (np.array([4, 2]), 3),
        (np.arange(7) % 3 == 1, 4),
        ((3, slice(None), 1), 1),
        ((Ellipsis, 0), 7),
    ):
        CountingReader.calls = []
        np.testing.assert_array_equal(rows[index], eager[index])
        assert rows_read() == span, index
    with pytest.raises(IndexError):
        rows[7]


@pytest.mark.parametrize("catalog", [CountingIntoReader], indirect=True)
def test_the_stream_array_mixes_with_other_fields(catalog):
    """Stream and inline fields of one Dataset compute together, and arrays
    derived from a stream field are ordinary dask arrays."""
    stream = catalog[STREAM_UIDS["step"]].primary
    eager = stream.read()
    lazy = stream.to_dask()
    computed = lazy.compute()
    for key in eager.data_vars:
        np.testing.assert_array_equal(computed[key].values, eager[key].values)
    total = (lazy["bdet"].astype("int64") + lazy["pdet"]).compute()
    np.testing.assert_array_equal(
        total.values,
        eager["bdet"].values.astype("int64") + eager["pdet"].values[:, None, None, None],
    )


@pytest.mark.parametrize("catalog", [CountingIntoReader], indirect=True)
def test_only_a_whole_compute_reads_into_one_buffer(catalog):
    """A Dataset's compute reads its stream field into one buffer; a sum or
    a slice reads plain chunks (freed as they are consumed), so a reduction
    over a stream bigger than memory still runs chunk by chunk."""
    stream = catalog[STREAM_UIDS["fly"]].primary
    eager = stream.read()["bdet"].values
    lazy = stream.to_dask(chunks=3)
    CountingReader.calls = []
    CountingIntoReader.buffers = []
    computed = lazy.compute()["bdet"].values
    np.testing.assert_array_equal(computed, eager)
    assert {kind for kind, _, _ in CountingReader.calls} == {"into"}
    # The three chunks of bdet (bdet-sum has its own buffer).
    assert sum(np.shares_memory(computed, out) for out in CountingIntoReader.buffers) == 3
    CountingReader.calls = []
    CountingIntoReader.buffers = []
    total = lazy["bdet"].data.astype("int64").sum().compute()
    assert int(total) == int(eager.astype("int64").sum())
    assert sorted(CountingReader.calls) == [("call", 0, 3), ("call", 3, 6), ("call", 6, 7)]
    assert CountingIntoReader.buffers == []
