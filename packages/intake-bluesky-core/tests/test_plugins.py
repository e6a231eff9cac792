"""Entry point discovery of backends and handlers."""

from importlib.metadata import EntryPoint

import numpy as np
import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog, HandlerRegistry, backends
from intake_bluesky.core import _registry as _plugins
from intake_bluesky.core.testing import UIDS, NumpySeqHandler, example_registry, example_runs


@pytest.fixture
def fake_entry_points(monkeypatch):
    groups = {}

    def fake(group):
        return {ep.name: ep for ep in groups.get(group, [])}

    monkeypatch.setattr(_plugins, "entry_point_objects", fake)
    import intake_bluesky.core._model.filling as filling

    monkeypatch.setattr(filling, "entry_point_objects", fake)
    return groups


def test_backends_lists_installed_and_warns_on_broken(fake_entry_points):
    fake_entry_points["intake_bluesky.backends"] = [
        EntryPoint(
            "in_memory", "intake_bluesky.core:BlueskyInMemoryCatalog", "intake_bluesky.backends"
        ),
        EntryPoint("broken", "no_such_module_xyz:Catalog", "intake_bluesky.backends"),
    ]
    with pytest.warns(UserWarning, match="'broken'.*no_such_module_xyz"):
        found = backends()
    assert found == {"in_memory": BlueskyInMemoryCatalog}


def test_real_entry_point_of_core_is_installed():
    assert backends()["in_memory"] is BlueskyInMemoryCatalog


class OtherHandler(NumpySeqHandler):
    def __call__(self, index):
        return -super().__call__(index)


def test_handler_discovered_from_entry_points_and_explicit_wins(fake_entry_points, tmp_path):
    fake_entry_points["databroker.handlers"] = [
        EntryPoint(
            "NPY_SEQ", "intake_bluesky.core.testing:NumpySeqHandler", "databroker.handlers"
        ),
    ]
    assert HandlerRegistry().resolve("NPY_SEQ") is NumpySeqHandler
    assert HandlerRegistry({"NPY_SEQ": OtherHandler}).resolve("NPY_SEQ") is OtherHandler
    root_map = example_registry(tmp_path)["root_map"]
    discovered = BlueskyInMemoryCatalog(root_map=root_map)
    explicit = BlueskyInMemoryCatalog(
        root_map=root_map, handler_registry={"NPY_SEQ": OtherHandler}
    )
    for docs in example_runs(tmp_path):
        discovered.ingest(docs)
        explicit.ingest(docs)
    a = discovered[UIDS["scan"]].primary.read()["ext"].values
    b = explicit[UIDS["scan"]].primary.read()["ext"].values
    np.testing.assert_array_equal(b, -a)
    assert a[0, 0, 0] == 10.0
