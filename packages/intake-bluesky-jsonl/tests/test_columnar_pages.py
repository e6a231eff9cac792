"""Big event pages are made columnar as they are decoded: the same values,
dtypes and order as when the core packs them from lists."""

import json
import re

import event_model
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.jsonl import BlueskyJSONLCatalog
from intake_bluesky.jsonl import _format as format_module

ROWS = 300  # above the core's COLUMNAR_ROWS


def _run(values, *, rows=ROWS, pages=2):
    """A run of one descriptor whose ``det`` column is ``values`` (cycled),
    stored as ``pages`` event pages of ``rows`` rows."""
    from event_model import compose_run

    bundle = compose_run(time=1.0, uid="c0ffee")
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={"det": {"source": "sim", "dtype": "number", "shape": []}},
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for p in range(pages):
        events = [
            desc.compose_event(
                data={"det": values[(p * rows + i) % len(values)]},
                timestamps={"det": 10.0 + i},
                time=100.0 + p * rows + i,
            )
            for i in range(rows)
        ]
        docs.append(("event_page", dict(event_model.pack_event_page(*events))))
    docs.append(("stop", bundle.compose_stop(time=1e4)))
    return docs


def _write(tmp_path, docs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "c0ffee.jsonl"
    with open(path, "w") as f:
        for name, doc in docs:
            f.write(json.dumps([name, doc]) + "\n")  # as suitcase-jsonl writes
    return path


def _reference(docs):
    """The run read from the documents as the stdlib decodes them (exact
    ints, no columnar pages): what the core makes of them."""
    cat = BlueskyInMemoryCatalog()
    for name, doc in json.loads(json.dumps(docs)):
        cat(name, doc)
    return cat["c0ffee"].primary.read()


def _read(tmp_path):
    return BlueskyJSONLCatalog(str(tmp_path), index_path=False)["c0ffee"].primary.read()


def _same(got, want):
    for key in ("det", "time"):
        a, b = got[key].values, want[key].values
        assert a.dtype == b.dtype, key
        assert a.tolist() == b.tolist() or (a.dtype.kind == "f" and np.array_equal(a, b, True))


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([0.5, -1.25, 3e18], "float64"),
        ([1, -2, 2**63 - 1], "int64"),
        ([2**63, 2**64 - 1], "uint64"),
    ],
)
def test_big_pages_of_one_kind_of_number(tmp_path, values, dtype):
    docs = _run(values)
    line = json.dumps(["event_page", docs[2][1]]).encode()
    [(_, page)], _, exact = format_module._decode_plain(line)
    assert type(page["data"]["det"]) is np.ndarray and exact  # made columnar
    got = _read(_write(tmp_path, docs).parent)
    assert got["det"].dtype == dtype
    assert got["det"].values.tolist() == [values[i % len(values)] for i in range(2 * ROWS)]
    _same(got, _reference(docs))


@pytest.mark.parametrize(
    "values",
    [
        [1.5, 2**64],  # an int beyond 64 bits among floats
        [1, 2**64, 2],  # ints beyond 64 bits
        [1.5, -(2**63) - 1],
        [1.5, 1e19, -9.3e18],  # floats orjson's rounding of such ints could be
        [1, 2.5],  # ints and floats
        [1.5, None],
        [1.5, "a"],
        [True, False],
    ],
)
def test_big_pages_of_other_values_read_as_before(tmp_path, values):
    docs = _run(values)
    _same(_read(_write(tmp_path, docs).parent), _reference(docs))


def test_exact_page_rejects_what_orjson_may_have_rounded():
    page = {
        "time": np.array([1.0]),
        "seq_num": np.array([1]),
        "data": {"x": np.array([-(2.0**63)])},
        "timestamps": {"x": np.array([1.0])},
        "filled": {},
    }
    assert not format_module._exact_page(page)
    page["data"]["x"] = np.array([np.nextafter(2.0**63, 0)])
    assert format_module._exact_page(page)
    page["filled"] = {"x": [1.0]}
    assert not format_module._exact_page(page)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(min_value=-(2**70), max_value=2**70),
        ),
        min_size=1,
        max_size=4,
    ),
    st.integers(min_value=1, max_value=2),
)
def test_big_pages_read_as_the_core_packs_lists(tmp_path_factory, values, pages):
    docs = _run(values, pages=pages)
    tmp = tmp_path_factory.mktemp("run")
    _same(_read(_write(tmp, docs).parent), _reference(docs))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789.,e-[] a", max_size=80))
def test_long_digits_finds_19_digits_in_a_row(text):
    # Short texts (a file's first block) and long ones (a chunk of a run
    # file) are searched differently: both are checked, at either end too.
    pad = b" " * format_module._NUMPY_FROM
    for data in (text.encode(), text.encode() + pad, pad + text.encode()):
        expected = bool(re.search(rb"[0-9]{19}", data))
        assert format_module._long_digits(data) == expected
        assert format_module._long_digits(memoryview(data)) == expected
