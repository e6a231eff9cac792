"""A real tiled server in this process (SQLite catalog, writable storage in
a temp folder), filled by bluesky-tiled-plugins' TiledWriter from a real
RunEngine."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path, PurePath

import pytest

pytest.importorskip("tiled.server")


@pytest.fixture(scope="session")
def tiled_root(tmp_path_factory):
    """The root container of an in-process tiled server (one per test run:
    starting one costs seconds; each test writes in a container of its own)."""
    from tiled.catalog import from_uri
    from tiled.client import Context, from_context
    from tiled.server.app import build_app

    base = tmp_path_factory.mktemp("tiled")
    catalog = from_uri(
        f"sqlite:///{base}/catalog.db",
        writable_storage=[str(base / "data"), f"sqlite:///{base}/tables.sqlite"],
        readable_storage=[str(tmp_path_factory.getbasetemp())],
        init_if_not_exists=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = Context.from_app(build_app(catalog))
    with context:
        yield from_context(context)


@pytest.fixture
def tiled_container(tiled_root):
    """An empty container of runs on the server, for one test."""
    return tiled_root.create_container(key=f"t{uuid.uuid4().hex[:12]}")


class Beamline:
    """A RunEngine writing into a tiled container through TiledWriter, with
    ophyd.sim and ophyd-async sim devices; every document is also kept."""

    def __init__(self, container, h5_dir: Path):
        from bluesky import RunEngine
        from bluesky_tiled_plugins import TiledWriter

        self.container = container
        self.h5_dir = h5_dir
        self.RE = RunEngine({}, call_returns_result=False)
        self.documents: dict[str, list] = {}
        self._current: list | None = None
        self.RE.subscribe(TiledWriter(container, batch_size=1))
        self.RE.subscribe(self._keep)

    def _keep(self, name, doc):
        if name == "start":
            self._current = self.documents.setdefault(doc["uid"], [])
        assert self._current is not None
        self._current.append((name, doc))

    def ophyd_async_devices(self):
        from ophyd_async import sim
        from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider, init_devices

        self.h5_dir.mkdir(exist_ok=True)
        pattern = sim.PatternGenerator()
        provider = StaticPathProvider(UUIDFilenameProvider(), PurePath(self.h5_dir))
        with init_devices():
            stage = sim.SimStage(pattern)
            pdet = sim.SimPointDetector(pattern)
            bdet = sim.SimBlobDetector(provider, pattern)
        return stage, pdet, bdet


@pytest.fixture
def beamline(tiled_container, tmp_path):
    return Beamline(tiled_container, tmp_path / "h5")
