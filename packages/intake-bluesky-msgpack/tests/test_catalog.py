"""BlueskyMsgpackCatalog: the samples through the catalog, YAML catalogs, the
intake opener, entry points, files that appear, grow, change and vanish."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import warnings

import event_model
import intake
import numpy as np
import pytest
from msgpack_testing import RUN0, RUN1, SAMPLES, pack_record, write_run

from intake_bluesky.core import BlueskyCatalog, backends
from intake_bluesky.msgpack import BlueskyMsgpackCatalog

SAMPLE_ROOT = "/data/bluesky-samples/external_npy"
HANDLERS = {"NPY_SEQ": "intake_bluesky.core.testing.NumpySeqHandler"}


@pytest.fixture
def sample_dir(tmp_path):
    directory = tmp_path / "runs"
    shutil.copytree(SAMPLES / "msgpack", directory)
    return directory


def emitted(name):
    return json.loads((SAMPLES / "docs" / f"{name}_documents.json").read_text())


def test_samples_through_the_catalog(sample_dir):
    cat = BlueskyMsgpackCatalog(
        str(sample_dir),
        handler_registry=HANDLERS,
        root_map={SAMPLE_ROOT: str(SAMPLES / "external_npy")},
    )
    assert isinstance(cat, BlueskyCatalog)
    assert list(cat) == [RUN0, RUN1]
    run = cat[RUN0]
    assert list(run) == ["baseline", "primary"]
    ds = run.primary.read()
    events = [d for n, d in emitted("run0") if n == "event" and "det" in d["data"]]
    np.testing.assert_array_equal(ds["det"].values, [e["data"]["det"] for e in events])
    np.testing.assert_array_equal(ds["time"].values, [e["time"] for e in events])
    assert ds["direct_img"].dtype == np.uint16 and ds["direct_img"].shape == (3, 4, 5)
    np.testing.assert_array_equal(
        ds["direct_img"].values, [e["data"]["direct_img"] for e in events]
    )
    img = ds["img"]
    assert img.shape == (3, 6, 3) and img.dtype == np.float64
    for i in range(3):
        expected = np.load(SAMPLES / "external_npy" / f"0d9c43_{i}.npy")
        np.testing.assert_array_equal(img.values[i], expected)
    assert cat[-1].metadata["start"]["uid"] == RUN1
    assert cat[-1].metadata["stop"]["exit_status"] == "success"


def test_canonical_of_a_sample_reads_back_as_emitted(sample_dir):
    from intake_bluesky.core.testing import normalize_documents

    cat = BlueskyMsgpackCatalog(str(sample_dir))
    for uid, name in ((RUN0, "run0"), (RUN1, "run1")):
        docs = list(cat[uid].canonical(fill="no"))
        assert docs[0][0] == "start" and docs[-1][0] == "stop"
        assert normalize_documents(docs) == normalize_documents(emitted(name))


def test_yaml_catalog_by_name_and_by_class_path(sample_dir, tmp_path):
    path = tmp_path / "catalog.yml"
    path.write_text(
        textwrap.dedent(
            f"""\
            sources:
              by_name:
                driver: bluesky_msgpack_catalog
                args:
                  paths: "{{{{ CATALOG_DIR }}}}/runs"
                  handler_registry:
                    NPY_SEQ: intake_bluesky.core.testing.NumpySeqHandler
                  root_map:
                    {SAMPLE_ROOT}: {SAMPLES / "external_npy"}
              by_class:
                driver: intake_bluesky.msgpack.BlueskyMsgpackCatalog
                args:
                  paths: "{sample_dir}/*.msgpack"
                  query: {{plan_name: count}}
            """
        )
    )
    catalog = intake.open_catalog(str(path))
    by_name = catalog["by_name"]
    assert isinstance(by_name, BlueskyMsgpackCatalog)
    assert list(by_name) == [RUN0, RUN1]
    ds = by_name[1].primary.read()
    assert ds["det"].size == 3
    expected = np.load(SAMPLES / "external_npy" / "0d9c43_2.npy")
    np.testing.assert_array_equal(ds["img"].values[2], expected)
    by_class = catalog["by_class"]
    assert isinstance(by_class, BlueskyMsgpackCatalog)
    assert list(by_class) == [RUN1]


def test_intake_opener(sample_dir):
    cat = intake.open_bluesky_msgpack_catalog(str(sample_dir))
    assert isinstance(cat, BlueskyMsgpackCatalog)
    assert len(cat) == 2
    assert cat[RUN1[:6]].metadata["start"]["plan_name"] == "count"


def test_registered_as_a_backend():
    assert backends()["msgpack"] is BlueskyMsgpackCatalog


def test_paths_forms(sample_dir):
    one = str(sample_dir / f"{RUN0}.msgpack")
    assert list(BlueskyMsgpackCatalog(one)) == [RUN0]
    assert list(BlueskyMsgpackCatalog([one, str(sample_dir / f"{RUN1}.msgpack")])) == [RUN0, RUN1]
    assert list(BlueskyMsgpackCatalog(str(sample_dir / "e26*"))) == [RUN1]
    assert list(BlueskyMsgpackCatalog(sample_dir)) == [RUN0, RUN1]


def _count_run(n_events, stop=True):
    bundle = event_model.compose_run(metadata={"plan_name": "count"})
    desc = bundle.compose_descriptor(
        name="primary", data_keys={"det": {"source": "s", "dtype": "number", "shape": []}}
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for i in range(n_events):
        event = desc.compose_event(data={"det": float(i)}, timestamps={"det": 0.0}, seq_num=i + 1)
        docs.append(("event", event))
    if stop:
        docs.append(("stop", bundle.compose_stop()))
    return docs


def test_live_run_grows_and_completes(tmp_path):
    docs = _count_run(4)
    uid = docs[0][1]["uid"]
    path = tmp_path / f"{uid}.msgpack"
    cat = BlueskyMsgpackCatalog(str(tmp_path))
    assert len(cat) == 0
    # The writer has written start, descriptor, one event and part of another.
    partial = pack_record(*docs[3])
    path.write_bytes(b"".join(pack_record(n, d) for n, d in docs[:3]) + partial[:10])
    run = cat[-1]
    assert run.metadata["stop"] is None
    assert run.primary.read()["det"].values.tolist() == [0.0]
    with open(path, "ab") as file:
        file.write(partial[10:] + pack_record(*docs[4]))
    assert cat[-1].primary.read()["det"].values.tolist() == [0.0, 1.0, 2.0]
    # The same run object sees the file change too.
    assert run.primary.read()["det"].values.tolist() == [0.0, 1.0, 2.0]
    with open(path, "ab") as file:
        file.write(b"".join(pack_record(n, d) for n, d in docs[5:]))
    assert cat[-1].metadata["stop"]["exit_status"] == "success"
    assert cat[-1].primary.read()["det"].values.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_new_and_deleted_files(tmp_path):
    cat = BlueskyMsgpackCatalog(str(tmp_path))
    first, second = _count_run(2), _count_run(3)
    write_run(tmp_path / f"{first[0][1]['uid']}.msgpack", first)
    assert list(cat) == [first[0][1]["uid"]]
    write_run(tmp_path / f"{second[0][1]['uid']}.msgpack", second)
    assert list(cat) == [first[0][1]["uid"], second[0][1]["uid"]]
    assert cat[-1].primary.read()["det"].size == 3
    os.remove(tmp_path / f"{second[0][1]['uid']}.msgpack")
    assert list(cat) == [first[0][1]["uid"]]
    with pytest.raises(KeyError):
        cat[second[0][1]["uid"]]
    # Files of other kinds in the directory are not runs.
    (tmp_path / "notes.txt").write_text("not a run")
    assert len(cat) == 1


def test_file_without_start_is_skipped_with_a_warning(tmp_path):
    docs = _count_run(2)
    write_run(tmp_path / f"{docs[0][1]['uid']}.msgpack", docs)
    headless = tmp_path / "headless.msgpack"
    write_run(headless, docs[1:])
    cat = BlueskyMsgpackCatalog(str(tmp_path))
    with pytest.warns(UserWarning, match="headless.msgpack"):
        assert list(cat) == [docs[0][1]["uid"]]


def test_corrupt_run_is_an_error_naming_file_and_offset(tmp_path):
    docs = _count_run(3)
    records = [pack_record(n, d) for n, d in docs]
    path = tmp_path / "run.msgpack"
    offset = sum(map(len, records[:3]))
    path.write_bytes(b"".join(records[:3]) + b"\xc1" + b"".join(records[3:]))
    cat = BlueskyMsgpackCatalog(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Indexing reads only the first record and the end: the run is listed.
        assert len(cat) == 1
    with pytest.raises(ValueError, match=f"run.msgpack.*byte offset {offset}"):
        cat[-1].primary.read()


def test_repr_and_pickle(sample_dir):
    import pickle

    cat = BlueskyMsgpackCatalog(str(sample_dir))
    assert "msgpack" in repr(cat) and "2 runs" in repr(cat)
    source = cat.driver.run(RUN0)
    clone = pickle.loads(pickle.dumps(source))
    assert clone.start()["uid"] == RUN0
