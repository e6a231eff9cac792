"""How many requests a fresh catalog makes to read a stream: the metadata
requests before the detector file is opened are most of the time of a
``primary.read()`` whose data is read directly. The values are checked too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.tiled import BlueskyTiledCatalog

SAMPLES = Path(__file__).parents[2] / "intake-bluesky-hdf5" / "tests" / "samples" / "ophyd_async"
SAMPLE_ROOT = "/data/ophyd-async-samples/h5"

#: A fresh catalog given a client node, reading a run's stream whose data is
#: in a file read directly: the container's node, the listing that finds the
#: run (its node comes with it), one listing of the run's streams and their
#: children (with data sources); and the event table when the stream has one.
METADATA_REQUESTS = 3


class Requests:
    """The requests a tiled client's context sends, as ``METHOD path?query``."""

    def __init__(self, context):
        self.context = context
        self.sent: list[str] = []

    def _log(self, request):
        self.sent.append(f"{request.method} {unquote(request.url.raw_path.decode())}")

    def __enter__(self):
        self.context.http_client.event_hooks["request"].append(self._log)
        return self.sent

    def __exit__(self, *exc):
        self.context.http_client.event_hooks["request"].remove(self._log)


def _documents(case, root):
    docs = json.loads((SAMPLES / "documents.json").read_text())[case]
    return json.loads(json.dumps(docs).replace(SAMPLE_ROOT, str(root)))


@pytest.fixture
def written(tiled_container, tmp_path):
    """Two recorded ophyd-async runs replayed into TiledWriter: a fly scan
    (no event table) and a step scan (an event table and two files)."""
    from bluesky_tiled_plugins import TiledWriter

    root = tmp_path / "samples"
    shutil.copytree(SAMPLES / "h5", root)
    expected = BlueskyInMemoryCatalog()
    uids = []
    for case in ("fly_cpe1", "scan_two_blobs_point"):
        documents = _documents(case, root)
        writer = TiledWriter(tiled_container)
        for name, doc in documents:
            writer(name, doc)
            expected(name, doc)
        uids.append(documents[0][1]["uid"])
    return tiled_container, uids, expected


def _read(container, key):
    with Requests(container.context) as sent:
        cat = BlueskyTiledCatalog(container, data_access="direct")
        dataset = cat[key].primary.read()
    return dataset, sent


@pytest.mark.parametrize("by", ["uid", "last"])
def test_a_direct_read_makes_few_requests(written, by):
    import xarray as xr

    container, (fly, step), expected = written
    last = expected[-1].metadata["start"]["uid"]  # the latest start time
    for uid, table in ((fly, 0), (step, 1)):
        key = -1 if by == "last" and uid == last else uid
        dataset, sent = _read(container, key)
        xr.testing.assert_equal(dataset, expected[uid].primary.read())
        assert len(sent) == METADATA_REQUESTS + table, sent
        # The run's streams and their children come in one listing.
        assert sum("/search-deep/" in s for s in sent) == 1, sent
        assert not [s for s in sent if s.startswith("GET /api/v1/metadata/") and uid in s], sent


def test_a_server_without_the_deep_listing_is_read_level_by_level(written, monkeypatch):
    """A server whose nodes do not offer ``search_deep`` (tiled before it):
    the run's streams, then each stream's children, as before."""
    import xarray as xr

    from intake_bluesky.tiled import _runsource

    monkeypatch.setattr(_runsource, "_deep_listing", lambda run: None)
    container, (fly, _), expected = written
    dataset, sent = _read(container, fly)
    xr.testing.assert_equal(dataset, expected[fly].primary.read())
    assert len(sent) == METADATA_REQUESTS + 1, sent
    assert not [s for s in sent if "/search-deep/" in s], sent


def test_catalogs_by_uri_share_one_tls_context_per_ca_bundle(monkeypatch, tmp_path):
    """Loading the CA bundle is most of the cost of an HTTP client: the
    catalogs of a process share one verifying TLS context, a new one for
    another bundle."""
    import ssl

    from intake_bluesky.tiled import _connect

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    first = _connect._tls()
    assert isinstance(first, ssl.SSLContext) and first is _connect._tls()
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    other = _connect._tls()
    assert other is not first and other.verify_mode == ssl.CERT_REQUIRED
