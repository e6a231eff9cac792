"""columnar_page / number_array: the arrays as_column would make, or None."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from intake_bluesky.core._model.pages import as_column, columnar_page, number_array

numbers = st.one_of(
    st.floats(allow_nan=False),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(numbers, min_size=1, max_size=6))
def test_number_array_is_as_column_or_none(values):
    got = number_array(values, len(values))
    if got is None:
        return
    want = as_column(values)
    assert isinstance(want, np.ndarray)
    assert got.dtype == want.dtype
    assert got.tolist() == want.tolist()
    assert got.tolist() == values


def _page(**changes):
    page = {
        "descriptor": "d",
        "uid": ["a", "b"],
        "time": [1.0, 2.0],
        "seq_num": [1, 2],
        "data": {"x": [0.5, 1.5], "n": [3, 2**63 - 1]},
        "timestamps": {"x": [1.0, 2.0], "n": [1.0, 2.0]},
        "filled": {},
    }
    page.update(changes)
    return page


def test_columnar_page_values_and_dtypes():
    doc = _page()
    page = columnar_page(doc, 2)
    assert page["data"]["x"].dtype == np.float64 and page["data"]["x"].tolist() == [0.5, 1.5]
    assert page["data"]["n"].dtype == np.int64 and page["data"]["n"].tolist() == [3, 2**63 - 1]
    assert page["seq_num"].tolist() == [1, 2] and page["time"].tolist() == [1.0, 2.0]
    assert page["uid"] == ["a", "b"] and doc["data"]["x"] == [0.5, 1.5]  # doc unchanged


def test_columnar_page_refuses_other_pages():
    assert columnar_page(_page(data={"x": [1, 0.5]}), 2) is None
    assert columnar_page(_page(data={"x": [0.5, None]}), 2) is None
    assert columnar_page(_page(data={"x": [[1.0], [2.0]]}), 2) is None
    assert columnar_page(_page(uid=["a", 1]), 2) is None
    assert columnar_page(_page(other=1), 2) is None
    assert columnar_page(_page(filled={"x": [{}, {}]}), 2) is None
    assert columnar_page(_page(), 3) is None
