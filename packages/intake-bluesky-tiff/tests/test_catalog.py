"""BlueskyTiffCatalog through the core model: search, read, to_dask, canonical."""

import os
import pickle
import warnings

import dask
import event_model
import intake
import numpy as np
import pytest
import tifffile
import yaml

from intake_bluesky.core import BlueskyCatalog
from intake_bluesky.tiff import (
    BlueskyTiffCatalog,
    MixedFramesError,
    TiffPagesHandler,
    TiffSkippedWarning,
    _handler,
)


@pytest.fixture
def spy(monkeypatch):
    """Counts handler calls and every pixel decode by tifffile."""
    calls = {"handler": 0, "decode": 0}
    handler_call = TiffPagesHandler.__call__
    page_asarray = tifffile.TiffPage.asarray

    def counting_call(self, *args, **kwargs):
        calls["handler"] += 1
        return handler_call(self, *args, **kwargs)

    def counting_asarray(self, *args, **kwargs):
        calls["decode"] += 1
        return page_asarray(self, *args, **kwargs)

    monkeypatch.setattr(TiffPagesHandler, "__call__", counting_call)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", counting_asarray)
    _handler.close_all()
    return calls


def to_plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def imread_all(paths):
    """The floor: every page of every file, stacked, via tifffile."""
    frames = []
    for path in paths:
        data = tifffile.imread(path)
        frames.extend(data if data.ndim == 3 else [data])
    return np.stack(frames)


def test_is_a_core_catalog_and_lists_runs_oldest_first(bucket, t0):
    cat = BlueskyTiffCatalog(bucket, group_by="series")
    assert isinstance(cat, BlueskyCatalog)
    assert len(cat) == 3
    starts = [cat[uid].metadata["start"] for uid in cat]
    assert [s["sample_name"] for s in starts] == ["sampleA_exp0.5s", "sampleB_exp0.5s", "stack"]
    assert [s["time"] for s in starts] == [t0, t0 + 3, t0 + 6]
    assert cat[-1].metadata["start"]["sample_name"] == "stack"
    assert cat[-1].metadata["stop"]["num_events"] == {"primary": 5}
    assert list(cat[-1]) == ["primary"]


def test_search_over_synthesized_start_documents(bucket):
    cat = BlueskyTiffCatalog(bucket, group_by="series")
    found = cat.search({"sample_name": {"$regex": "^sampleB"}})
    assert [cat_run.metadata["start"]["files"][0] for cat_run in found.values()] == [
        "sampleB_exp0.5s_0000.tif"
    ]
    assert len(cat.search({"num_images": {"$gt": 3}})) == 1
    assert len(cat.search({"files": "stack.tif"})) == 1  # array contains
    assert len(cat.search({"tiff_tags.Software": "demo-detector"})) == 2
    assert len(cat.search({"tiff_tags.Software": "tifffile.py"})) == 1
    nested = cat.search({"tiff_tags.Software": "demo-detector"}).search(
        {"sample_name": "sampleA_exp0.5s"}
    )
    assert len(nested) == 1
    assert len(cat.search({"image_shape": [8, 6]})) == 3
    with pytest.raises(ValueError):
        cat.search({"$where": "1"})


def test_partial_uid_and_full_uid_lookup(bucket):
    cat = BlueskyTiffCatalog(bucket)
    [uid] = list(cat)
    assert cat[uid].metadata["start"]["uid"] == uid
    assert cat[uid[:8]].metadata["start"]["uid"] == uid
    assert uid in cat


def test_read_gives_pixels_and_dtype_of_the_files(bucket, t0):
    cat = BlueskyTiffCatalog(bucket)
    ds = cat[-1].primary.read()
    files = sorted(bucket.iterdir())
    expected = imread_all(files)
    image = ds["image"]
    assert image.dims == ("time", "dim_y", "dim_x")
    assert image.shape == (11, 8, 6) and image.dtype == np.dtype("uint16")
    assert np.array_equal(image.values, expected)
    assert ds["time"].values.tolist() == [t0 + i for i in range(6)] + [t0 + 6] * 5
    assert ds["seq_num"].values.tolist() == list(range(1, 12))


def test_series_frames_read_in_numeric_order(series_dir, frame):
    cat = BlueskyTiffCatalog(series_dir, group_by="series")
    ds = cat[-1].primary.read()
    # frame_i has value 100*i at [0, 0]: 1, 2, ..., 12, not 1, 10, 11, 12, 2, ...
    assert ds["image"].values[:, 0, 0].tolist() == [100 * i for i in range(1, 13)]
    assert cat[-1].metadata["start"]["files"][:3] == ["frame_1.tif", "frame_2.tif", "frame_3.tif"]


def test_to_dask_reads_nothing_until_compute(series_dir, spy):
    cat = BlueskyTiffCatalog(series_dir, group_by="series")
    run = cat[-1]
    ds = run.primary.to_dask()
    image = ds["image"]
    assert isinstance(image.data, dask.array.Array)
    assert spy == {"handler": 0, "decode": 0}
    # A chunk spans many frames, not one per event.
    assert image.data.numblocks == (1, 1, 1)
    values = image.values
    assert spy["handler"] == 12 and spy["decode"] == 12
    expected = imread_all(sorted(series_dir.iterdir(), key=lambda p: int(p.stem.split("_")[1])))
    assert values.dtype == expected.dtype and np.array_equal(values, expected)


def test_opening_searching_and_metadata_read_no_pixels(bucket, spy):
    cat = BlueskyTiffCatalog(bucket, group_by="series")
    for uid in cat.search({"sample_name": "stack"}):
        run = cat[uid]
        run.metadata["start"], run.metadata["stop"], list(run)
        run.primary.to_dask()
        [name for name, _ in run.canonical(fill="no")]
    assert spy == {"handler": 0, "decode": 0}


def test_lazy_graph_pickles(series_dir):
    image = BlueskyTiffCatalog(series_dir)[-1].primary.to_dask()["image"].data
    restored = pickle.loads(pickle.dumps(image))
    assert np.array_equal(restored.compute(), image.compute())


def test_canonical_fill_no_points_at_the_files(bucket):
    run = BlueskyTiffCatalog(bucket)[-1]
    documents = list(run.canonical(fill="no"))
    names = [name for name, _ in documents]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.index("descriptor") < names.index("event_page")
    for name, doc in documents:
        # Contents valid; exact JSON types are checked in the test below.
        event_model.schema_validators[event_model.DocumentNames[name]].validate(to_plain(doc))
    resources = [doc for name, doc in documents if name == "resource"]
    assert sorted(os.path.join(r["root"], r["resource_path"]) for r in resources) == sorted(
        str(p) for p in bucket.iterdir()
    )
    datum_ids = set()
    for name, doc in documents:
        if name == "datum":
            datum_ids.add(doc["datum_id"])
        elif name == "datum_page":
            datum_ids.update(doc["datum_id"])
    events = [doc for name, doc in documents if name == "event_page"]
    refs = [d for page in events for d in page["data"]["image"]]
    assert len(refs) == 11 and set(refs) == datum_ids


def test_canonical_fill_no_documents_are_schema_valid_as_yielded(bucket):
    for name, doc in BlueskyTiffCatalog(bucket)[-1].canonical(fill="no"):
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)


def test_canonical_fill_yes_gives_the_pixels(bucket):
    run = BlueskyTiffCatalog(bucket)[-1]
    frames = []
    for name, doc in run.canonical(fill="yes"):
        if name == "event_page":
            assert all(doc["filled"]["image"])
            frames.extend(np.asarray(f) for f in doc["data"]["image"])
        elif name == "event":
            assert doc["filled"]["image"]
            frames.append(np.asarray(doc["data"]["image"]))
    expected = imread_all(sorted(bucket.iterdir()))
    assert len(frames) == 11
    assert all(f.dtype == np.dtype("uint16") for f in frames)
    assert np.array_equal(np.stack(frames), expected)


def test_event_model_filler_reads_our_resources(bucket):
    # Other bluesky tools: event-model's Filler with our handler fills the
    # un-filled stream exactly like the catalog does.
    run = BlueskyTiffCatalog(bucket)[-1]
    filled = []
    with event_model.Filler({"TIFF_PAGES": TiffPagesHandler}, inplace=False) as filler:
        for name, doc in run.canonical(fill="no"):
            name, doc = filler(name, doc)
            if name == "event_page":
                filled.extend(doc["data"]["image"])
    assert np.array_equal(np.stack(filled), imread_all(sorted(bucket.iterdir())))


def test_mixed_shapes_raise_naming_the_odd_file_on_read(tmp_path, copy_sample):
    d = copy_sample("tiff_series", tmp_path / "ts")
    cat = BlueskyTiffCatalog(d)
    assert len(cat) == 1  # listed and searchable
    odd = "1b3384cd-9ab9-46c0-8a0a-1b686127ce29-primary-img-00000.tiff"
    with pytest.raises(MixedFramesError, match=odd):
        cat[-1].primary.read()
    # Grouped by series, each field is a run of its own and reads fine.
    by_series = BlueskyTiffCatalog(d, group_by="series")
    shapes = [by_series[uid].primary.read()["image"].shape for uid in by_series]
    assert sorted(shapes) == [(3, 4, 5), (3, 6, 3)]


def test_bad_file_in_the_bucket_is_skipped_with_a_warning(bucket):
    bad = bucket / "sampleA_exp0.5s_0003.tif"
    bad.write_bytes(b"II*\x00\x08\x00\x00\x00")  # a header, then nothing
    cat = BlueskyTiffCatalog(bucket, group_by="series")
    with pytest.warns(TiffSkippedWarning, match="sampleA_exp0.5s_0003.tif"):
        assert len(cat) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TiffSkippedWarning)
        run = cat.search({"sample_name": "sampleA_exp0.5s"})[-1]
        assert run.primary.read()["image"].shape == (3, 8, 6)


def test_new_files_and_new_runs_are_noticed(series_dir, write_tif, frame, t0):
    cat = BlueskyTiffCatalog(series_dir.parent, recursive=True)
    assert len(cat) == 1
    old_uid = list(cat)[0]
    write_tif(series_dir / "frame_13.tif", frame(13), mtime=t0 + 13)
    [new_uid] = list(cat)
    assert new_uid != old_uid  # the run's files changed
    assert cat[-1].primary.read()["image"].shape == (13, 4, 5)
    assert cat[-1].metadata["stop"]["num_events"] == {"primary": 13}
    write_tif(series_dir.parent / "later" / "x_1.tif", frame(0), mtime=t0 + 100)
    assert len(cat) == 2
    assert cat[-1].metadata["start"]["sample_name"] == "x"
    (series_dir / "frame_13.tif").unlink()
    assert old_uid in cat


def test_regex_grouping_through_the_catalog(bucket):
    cat = BlueskyTiffCatalog(bucket, group_by=r"(?P<stem>sample[AB])_exp[\d.]+s_(?P<index>\d+)")
    names = sorted(cat[uid].metadata["start"]["sample_name"] for uid in cat)
    assert names == ["sampleA", "sampleB", "stack"]


def test_registered_with_intake_and_yaml(bucket, tmp_path):
    assert intake.open_bluesky_tiff_catalog is not None
    cat = intake.open_bluesky_tiff_catalog(str(bucket), group_by="series")
    assert len(cat) == 3
    spec = {
        "sources": {
            name: {"driver": driver, "args": {"paths": str(bucket), "group_by": "series"}}
            for name, driver in [
                ("by_name", "bluesky_tiff_catalog"),
                ("by_path", "intake_bluesky.tiff.BlueskyTiffCatalog"),
            ]
        }
    }
    path = tmp_path / "catalog.yml"
    path.write_text(yaml.safe_dump(spec))
    top = intake.open_catalog(str(path))
    for name in ("by_name", "by_path"):
        sub = top[name]
        assert isinstance(sub, BlueskyTiffCatalog)
        assert sorted(sub[u].metadata["start"]["sample_name"] for u in sub)[-1] == "stack"


def test_registered_as_backend():
    from intake_bluesky.core import backends

    assert backends()["tiff"] is BlueskyTiffCatalog


def test_explicit_handler_wins(bucket):
    class Zeros(TiffPagesHandler):
        def __call__(self, page=0):
            return np.zeros((8, 6), "uint16")

    cat = BlueskyTiffCatalog(bucket, handler_registry={"TIFF_PAGES": Zeros})
    assert not cat[-1].primary.read()["image"].values.any()


def test_canonical_fill_no_yields_what_the_format_synthesizes(bucket):
    # The conformance kit (intake_bluesky.core.testing.ConformanceTests) does
    # not apply: it stores arbitrary example runs, which a bucket of TIFF files
    # cannot hold. Its normalizer still checks that the core passes our
    # documents through unmodified (modulo page packing).
    from intake_bluesky.core.testing import normalize_documents
    from intake_bluesky.tiff import TiffFormat

    cat = BlueskyTiffCatalog(bucket, group_by="series")
    fmt = TiffFormat(group_by="series")
    files = sorted(str(p) for p in bucket.iterdir())
    for loc in fmt.split_runs(files):
        stored = normalize_documents(fmt.read_documents(loc))
        run = cat[stored["start"]["uid"]]
        assert normalize_documents(run.canonical(fill="no")) == stored


def test_two_groupings_of_the_same_files_index_their_own_starts(series_dir):
    by_directory = BlueskyTiffCatalog(series_dir)
    assert by_directory[-1].metadata["start"]["sample_name"] == "frame"
    by_regex = BlueskyTiffCatalog(series_dir, group_by=r"(?P<stem>fr)ame_(?P<index>\d+)")
    assert len(by_regex.search({"sample_name": "fr"})) == 1


def test_yaml_export_and_pickle_rebuild_the_catalog(bucket, tmp_path):
    cat = BlueskyTiffCatalog(str(bucket), group_by="series", root_map={"/old": "/new"})
    exported = yaml.safe_load(cat.yaml())
    [source] = exported["sources"].values()
    assert source["driver"] == "intake_bluesky.tiff.BlueskyTiffCatalog"
    assert source["args"] == {
        "paths": str(bucket),
        "group_by": "series",
        "root_map": {"/old": "/new"},
    }
    path = tmp_path / "exported.yml"
    path.write_text(cat.yaml())
    [reopened] = [intake.open_catalog(str(path))[name] for name in exported["sources"]]
    assert sorted(reopened) == sorted(cat)
    restored = pickle.loads(pickle.dumps(cat))
    assert sorted(restored) == sorted(cat)
    assert np.array_equal(
        restored[-1].primary.read()["image"].values, cat[-1].primary.read()["image"].values
    )


def test_a_new_process_uses_the_on_disk_index(bucket, tmp_path, monkeypatch):
    from intake_bluesky.core._files import headers as _files
    from intake_bluesky.tiff import TiffFormat

    index = tmp_path / "index.sqlite"
    first = BlueskyTiffCatalog(str(bucket), index_path=index)
    uids = list(first)
    starts = [first[uid].metadata["start"] for uid in uids]
    assert index.exists()
    # A new process: nothing indexed in memory; reading a TIFF header fails.
    monkeypatch.setattr(_files, "_HEADERS", type(_files._HEADERS)())

    def no_reading(self, location):
        raise AssertionError(f"read {location}")

    monkeypatch.setattr(TiffFormat, "read_header", no_reading)
    again = BlueskyTiffCatalog(str(bucket), index_path=index)
    assert list(again) == uids
    assert [again[uid].metadata["start"] for uid in uids] == starts
