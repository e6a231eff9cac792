"""A run deleted or written again on the server while it is read: a KeyError
naming the run, whichever way the client notices."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from intake_bluesky.tiled._runsource import TiledRunSource


class _HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.response = SimpleNamespace(status_code=status)


def _source():
    return SimpleNamespace(uid="abc-123", ref=SimpleNamespace(describe=lambda: "http://x/raw"))


@pytest.mark.parametrize(
    "error",
    [
        _HTTPError(404),  # the node asked for is gone
        KeyError("primary"),  # a child listed a moment before is gone
    ],
)
def test_a_node_gone_while_read_is_a_key_error_naming_the_run(error):
    with pytest.raises(KeyError, match=r"Run 'abc-123' is no longer in http://x/raw as it was"):
        with TiledRunSource._present(_source()):
            raise error


@pytest.mark.parametrize("error", [_HTTPError(500), ValueError("bad value")])
def test_other_errors_are_raised_as_they_are(error):
    with pytest.raises(type(error)) as raised:
        with TiledRunSource._present(_source()):
            raise error
    assert raised.value is error
