"""The retrofit: documents synthesized from TIFF files (no catalog involved)."""

import json
import os
import pickle
import shutil
import warnings

import event_model
import jsonschema
import numpy as np
import pytest
import tifffile

from intake_bluesky.tiff import MixedFramesError, TiffFormat, TiffSkippedWarning
from intake_bluesky.tiff._handler import SPEC


def locations(fmt, directory):
    files = sorted(str(p) for p in directory.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    return fmt.split_runs(files)


def by_name(documents):
    out = {}
    for name, doc in documents:
        out.setdefault(name, []).append(doc)
    return out


def assert_plain(value, where="start"):
    """Only JSON types: dict with str keys, list, str, int, float, bool, None."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str, where
            assert "." not in k and "/" not in k, f"{where}.{k}"
            assert_plain(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool), (where, type(value))


def validate(name, doc):
    # event-model's own validators, and plain jsonschema on its published schema.
    event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
    jsonschema.validate(doc, event_model.schemas[event_model.DocumentNames[name]])


# --- grouping of the sample bucket -----------------------------------------
def test_bucket_by_directory_is_one_run_of_eleven_events(bucket, t0):
    fmt = TiffFormat()
    [loc] = locations(fmt, bucket)
    start, stop = fmt.read_header(loc)
    assert start["files"] == [
        "sampleA_exp0.5s_0000.tif",
        "sampleA_exp0.5s_0001.tif",
        "sampleA_exp0.5s_0002.tif",
        "sampleB_exp0.5s_0000.tif",
        "sampleB_exp0.5s_0001.tif",
        "sampleB_exp0.5s_0002.tif",
        "stack.tif",
    ]
    assert start["num_files"] == 7
    assert start["num_images"] == 11  # six single pages + a 5-page stack
    assert start["sample_name"] == "bucket"  # two series: the directory names it
    assert start["directory"] == str(bucket)
    assert start["time"] == t0  # earliest mtime
    assert start["image_shape"] == [8, 6] and start["image_dtype"] == "<u2"
    assert stop["time"] == t0 + 6  # latest mtime
    assert stop["exit_status"] == "success"
    assert stop["num_events"] == {"primary": 11}
    assert stop["run_start"] == start["uid"]


def test_bucket_by_series_is_three_runs(bucket, t0):
    fmt = TiffFormat(group_by="series")
    headers = [fmt.read_header(loc) for loc in locations(fmt, bucket)]
    summary = [
        (s["sample_name"], s["num_images"], s["time"], p["time"], p["num_events"]["primary"])
        for s, p in headers
    ]
    assert summary == [
        ("sampleA_exp0.5s", 3, t0, t0 + 2, 3),
        ("sampleB_exp0.5s", 3, t0 + 3, t0 + 5, 3),
        ("stack", 5, t0 + 6, t0 + 6, 5),
    ]
    assert len({s["uid"] for s, _ in headers}) == 3


def test_tiff_series_sample_splits_by_field(tmp_path, copy_sample):
    d = copy_sample("tiff_series", tmp_path / "ts")
    fmt = TiffFormat(group_by="series")
    starts = [fmt.read_header(loc)[0] for loc in locations(fmt, d)]
    uid = "1b3384cd-9ab9-46c0-8a0a-1b686127ce29"
    assert [(s["sample_name"], s["image_shape"], s["num_images"]) for s in starts] == [
        (f"{uid}-primary-direct_img", [4, 5], 3),
        (f"{uid}-primary-img", [6, 3], 3),
    ]


# --- start metadata -----------------------------------------------------------
def test_start_tags_are_plain_typed(bucket):
    fmt = TiffFormat(group_by="series")
    start, stop = fmt.read_header(locations(fmt, bucket)[0])
    assert start["tiff_tags"] == {
        "ImageDescription": '{"exposure": 0.5, "frame": 0}',
        "Software": "demo-detector",
        "DateTime": "2024:01:01 12:00:00",
        "XResolution": 1.0,
        "YResolution": 1.0,
        "ResolutionUnit": "NONE",
        "ImageWidth": 6,
        "ImageLength": 8,
        "BitsPerSample": 16,
        "SamplesPerPixel": 1,
        "Compression": "NONE",
        "PhotometricInterpretation": "MINISBLACK",
    }
    assert_plain(start)
    assert_plain(stop)
    assert json.loads(json.dumps(start)) == start


def test_rational_and_enum_tags_become_floats_and_names(tmp_path, write_tif, frame):
    path = write_tif(
        tmp_path / "d" / "img_1.tif",
        frame(1, dtype="float32"),
        resolution=(300, 150),
        resolutionunit="CENTIMETER",
        description="caf\u00e9 sample".encode(),  # UTF-8 bytes: TIFF ASCII is often not
        software="scope 2.1",
        datetime="2024:05:06 07:08:09",
        extratags=[("Artist", "s", 0, "Dr. X", True)],
    )
    start, _ = TiffFormat().read_header((str(path),))
    tags = start["tiff_tags"]
    assert tags["XResolution"] == 300.0 and tags["YResolution"] == 150.0
    assert tags["ResolutionUnit"] == "CENTIMETER"
    assert tags["ImageDescription"] == "caf\u00e9 sample"
    assert tags["Software"] == "scope 2.1"
    assert tags["DateTime"] == "2024:05:06 07:08:09"
    assert tags["Artist"] == "Dr. X"
    assert tags["SampleFormat"] == "IEEEFP"
    assert start["image_dtype"] == "<f4"
    assert start["sample_name"] == "img"
    assert_plain(start)


# --- deterministic uids --------------------------------------------------------
def test_uids_are_the_same_on_every_open(series_dir):
    a = TiffFormat(group_by="series")
    b = pickle.loads(pickle.dumps(a))
    [loc] = locations(a, series_dir)
    docs_a = list(a.read_documents(loc))
    # A fresh format object, and a cold scan cache, give the very same documents.
    from intake_bluesky.tiff import _metadata

    _metadata._CACHE.clear()
    docs_b = list(b.read_documents(loc))
    assert docs_a == docs_b
    assert a.read_header(loc)[0]["uid"] == docs_a[0][1]["uid"]


def test_uids_survive_a_copy_that_keeps_names_sizes_and_mtimes(series_dir, tmp_path):
    # Decision (README): "the same files" = same names, sizes, mtimes (whole
    # seconds), whatever the directory: a bucket moved to another machine with
    # cp -p / rsync -a keeps its uids.
    moved = tmp_path / "elsewhere" / "renamed_dir"
    shutil.copytree(series_dir, moved)  # copy2: keeps mtimes
    fmt = TiffFormat(group_by="series")
    [orig] = locations(fmt, series_dir)
    [copy] = locations(fmt, moved)
    docs_orig = by_name(fmt.read_documents(orig))
    docs_copy = by_name(fmt.read_documents(copy))
    for name in ("start", "descriptor", "stop", "event_page"):
        assert [d["uid"] for d in docs_orig[name]] == [d["uid"] for d in docs_copy[name]], name
    assert [d["datum_id"] for d in docs_orig["datum_page"]] == [
        d["datum_id"] for d in docs_copy["datum_page"]
    ]
    # Only where the files are differs.
    assert docs_copy["start"][0]["directory"] == str(moved)
    assert {r["root"] for r in docs_copy["resource"]} == {str(moved)}


def test_sub_second_mtime_differences_do_not_change_uids(series_dir):
    fmt = TiffFormat(group_by="series")
    [loc] = locations(fmt, series_dir)
    before = fmt.read_header(loc)[0]["uid"]
    st = os.stat(loc[0])
    os.utime(loc[0], ns=(st.st_atime_ns, st.st_mtime_ns + 300_000_000))
    assert fmt.read_header(loc)[0]["uid"] == before


@pytest.mark.parametrize("change", ["rewrite", "touch", "add", "remove", "rename"])
def test_uid_changes_when_files_change(series_dir, write_tif, frame, t0, change):
    fmt = TiffFormat(group_by="series")
    [loc] = locations(fmt, series_dir)
    before = fmt.read_header(loc)[0]["uid"]
    target = series_dir / "frame_3.tif"
    if change == "rewrite":  # other pixels, other size
        write_tif(target, frame(3, shape=(4, 6)), mtime=t0 + 3)
    elif change == "touch":
        os.utime(target, (t0 + 1000, t0 + 1000))
    elif change == "add":
        write_tif(series_dir / "frame_13.tif", frame(13), mtime=t0 + 13)
    elif change == "remove":
        target.unlink()
    else:
        target.rename(series_dir / "frame_03.tif")
    [loc] = locations(fmt, series_dir)
    assert fmt.read_header(loc)[0]["uid"] != before


# --- the document stream ---------------------------------------------------------
def test_documents_are_schema_valid_and_complete(bucket, t0):
    fmt = TiffFormat()
    [loc] = locations(fmt, bucket)
    documents = list(fmt.read_documents(loc))
    for name, doc in documents:
        validate(name, doc)
        assert_plain(doc, name)
    names = [name for name, _ in documents]
    assert names[:2] == ["start", "descriptor"] and names[-2:] == ["event_page", "stop"]
    docs = by_name(documents)
    [start], [descriptor], [page], [stop] = (
        docs["start"],
        docs["descriptor"],
        docs["event_page"],
        docs["stop"],
    )
    assert start == fmt.read_header(loc)[0] and stop == fmt.read_header(loc)[1]
    assert descriptor["name"] == "primary" and descriptor["run_start"] == start["uid"]
    assert descriptor["data_keys"]["image"] == {
        "source": "tiff",
        "object_name": "tiff",
        "dtype": "array",
        "dtype_numpy": "<u2",
        "shape": [8, 6],
        "dims": ["dim_y", "dim_x"],
        "external": "FILESTORE:",
    }
    # One resource per file, pointing at it.
    resources = docs["resource"]
    assert [r["resource_path"] for r in resources] == start["files"]
    assert {r["root"] for r in resources} == {str(bucket)}
    assert {(r["spec"], r["path_semantics"], r["run_start"]) for r in resources} == {
        (SPEC, "posix", start["uid"])
    }
    # One datum per page: the stack has pages 0..4.
    pages = {d["resource"]: d["datum_kwargs"]["page"] for d in docs["datum_page"]}
    assert [pages[r["uid"]] for r in resources] == [[0]] * 6 + [[0, 1, 2, 3, 4]]
    # Events reference the datums in file/page order; times are file mtimes.
    datum_ids = [i for d in docs["datum_page"] for i in d["datum_id"]]
    assert page["data"]["image"] == datum_ids
    assert page["seq_num"] == list(range(1, 12))
    assert page["time"] == [t0 + i for i in range(6)] + [t0 + 6] * 5
    assert page["timestamps"]["image"] == page["time"]
    assert page["filled"]["image"] == [False] * 11
    assert len(set(page["uid"])) == 11
    assert stop["num_events"] == {"primary": len(page["seq_num"])}


def test_rgb_frames_name_the_sample_axis(tmp_path, write_tif):
    path = write_tif(tmp_path / "rgb.tif", np.zeros((4, 5, 3), "uint8"), photometric="rgb")
    docs = by_name(TiffFormat().read_documents((str(path),)))
    key = docs["descriptor"][0]["data_keys"]["image"]
    assert (key["shape"], key["dims"], key["dtype_numpy"]) == (
        [4, 5, 3],
        ["dim_y", "dim_x", "dim_sample"],
        "|u1",
    )


def test_read_header_reads_no_pixels(bucket, monkeypatch):
    from intake_bluesky.tiff import _metadata

    _metadata._CACHE.clear()

    def no_pixels(*args, **kwargs):
        raise AssertionError("read_header must not decode pixels")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_pixels)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", no_pixels)
    fmt = TiffFormat()
    [loc] = locations(fmt, bucket)
    assert fmt.read_header(loc)[1]["num_events"] == {"primary": 11}
    assert len(list(fmt.read_documents(loc))) > 0


# --- bad input ---------------------------------------------------------------------
def test_mixed_shapes_raise_naming_the_odd_file(tmp_path, copy_sample):
    d = copy_sample("tiff_series", tmp_path / "ts")
    fmt = TiffFormat()  # by directory: direct_img 4x5 and img 6x3 in one run
    [loc] = locations(fmt, d)
    start, stop = fmt.read_header(loc)  # listing and search still work
    assert start["num_files"] == 6
    odd = d / "1b3384cd-9ab9-46c0-8a0a-1b686127ce29-primary-img-00000.tiff"
    with pytest.raises(MixedFramesError, match="shape") as info:
        list(fmt.read_documents(loc))
    assert str(odd) in str(info.value)
    assert "[6, 3]" in str(info.value) and "[4, 5]" in str(info.value)


def test_mixed_dtypes_raise_naming_the_odd_file(series_dir, write_tif, frame):
    odd = write_tif(series_dir / "frame_7.tif", frame(7, dtype="float32"))
    fmt = TiffFormat()
    with pytest.raises(MixedFramesError) as info:
        list(fmt.read_documents(locations(fmt, series_dir)[0]))
    assert str(odd) in str(info.value) and "<f4" in str(info.value)


def test_stack_with_pages_of_two_shapes_raises_naming_it(tmp_path, frame):
    path = tmp_path / "d" / "mixed.tif"
    path.parent.mkdir()
    with tifffile.TiffWriter(path) as tw:
        tw.write(frame(0))
        tw.write(frame(1, shape=(2, 2)))
    with pytest.raises(MixedFramesError, match="page 1") as info:
        list(TiffFormat().read_documents((str(path),)))
    assert str(path) in str(info.value)


def test_thumbnail_pages_are_not_frames(tmp_path, frame):
    path = tmp_path / "d" / "with_thumb.tif"
    path.parent.mkdir()
    with tifffile.TiffWriter(path) as tw:
        tw.write(frame(0))
        tw.write(frame(1, shape=(2, 2)), subfiletype=1)  # reduced-resolution copy
        tw.write(frame(2))
    docs = by_name(TiffFormat().read_documents((str(path),)))
    assert docs["datum_page"][0]["datum_kwargs"] == {"page": [0, 2]}
    assert docs["stop"][0]["num_events"] == {"primary": 2}


def truncations(path):
    data = path.read_bytes()
    return {
        "empty": b"",
        "magic only": data[:4],
        "in the IFD": data[:20],
        "in the pixels": data[:-10],
    }


@pytest.mark.parametrize("kind", ["not a tiff", "empty", "magic only", "in the IFD",
                                  "in the pixels", "stack cut in an IFD",
                                  "stack cut before an IFD"])  # fmt: skip
def test_bad_files_are_skipped_with_a_warning_naming_them(series_dir, frame, kind):
    bad = series_dir / "frame_99.tif"
    if kind == "not a tiff":
        bad.write_text("this is a text file with a .tif name\n")
    elif kind.startswith("stack"):
        full = series_dir.parent / "stack.tif"
        tifffile.imwrite(full, np.stack([frame(i) for i in range(4)]), photometric="minisblack")
        data = full.read_bytes()
        with tifffile.TiffFile(full) as tif:
            ifd = tif.pages[2].offset
        # Cut inside the third IFD, or just before it: tifffile then reads two
        # pages and only logs; the pointer to the missing IFD gives it away.
        bad.write_bytes(data[: ifd + 4] if kind.endswith("in an IFD") else data[: ifd - 2])
    else:
        bad.write_bytes(truncations(series_dir / "frame_1.tif")[kind])
    fmt = TiffFormat()
    [loc] = locations(fmt, series_dir)
    assert str(bad) in loc
    with pytest.warns(TiffSkippedWarning, match=str(bad)):
        start, stop = fmt.read_header(loc)
    assert "frame_99.tif" not in start["files"]
    assert start["num_files"] == 12 and stop["num_events"] == {"primary": 12}
    with pytest.warns(TiffSkippedWarning, match=str(bad)):
        docs = by_name(fmt.read_documents(loc))
    assert [r["resource_path"] for r in docs["resource"]] == start["files"]


def test_a_group_of_only_bad_files_has_no_run(tmp_path):
    bad = tmp_path / "junk" / "a.tif"
    bad.parent.mkdir()
    bad.write_bytes(b"II*\x00garbage")
    with pytest.warns(TiffSkippedWarning, match="a.tif"):
        assert TiffFormat().read_header((str(bad),)) == (None, None)


def test_a_file_deleted_after_listing_is_left_out(series_dir):
    fmt = TiffFormat()
    [loc] = locations(fmt, series_dir)
    (series_dir / "frame_5.tif").unlink()
    start, stop = fmt.read_header(loc)
    assert "frame_5.tif" not in start["files"] and stop["num_events"] == {"primary": 11}


def test_good_files_warn_nothing(bucket):
    fmt = TiffFormat()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [loc] = locations(fmt, bucket)
        fmt.read_header(loc)
        list(fmt.read_documents(loc))


def test_format_pickles_and_compares():
    a = TiffFormat(group_by="series", recursive=True)
    b = pickle.loads(pickle.dumps(a))
    assert a == b and hash(a) == hash(b)
    assert a != TiffFormat(group_by="series")
    assert b.recursive and b.grouping.mode == "series"
