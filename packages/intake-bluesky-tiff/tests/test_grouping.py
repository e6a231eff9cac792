import pickle
import re

import pytest

from intake_bluesky.tiff import Grouping, natural_key


def names(runs):
    return [[p.rsplit("/", 1)[-1] for p in run] for run in runs]


def test_directory_groups_per_directory_in_natural_order():
    paths = ["/a/f_10.tif", "/a/f_2.tif", "/b/x.tif", "/a/f_1.tif", "/a/g.tif"]
    runs = Grouping("directory").split(paths)
    assert runs == [("/a/f_1.tif", "/a/f_2.tif", "/a/f_10.tif", "/a/g.tif"), ("/b/x.tif",)]


def test_series_orders_frames_numerically_not_lexically():
    paths = [f"/d/frame_{i}.tif" for i in (10, 2, 1, 11, 3)]
    assert names(Grouping("series").split(paths)) == [
        ["frame_1.tif", "frame_2.tif", "frame_3.tif", "frame_10.tif", "frame_11.tif"]
    ]


def test_series_splits_the_bucket_sample_names():
    paths = [f"/b/sample{s}_exp0.5s_000{i}.tif" for s in "BA" for i in (2, 0, 1)]
    paths.append("/b/stack.tif")
    runs = Grouping("series").split(paths)
    assert names(runs) == [
        ["sampleA_exp0.5s_0000.tif", "sampleA_exp0.5s_0001.tif", "sampleA_exp0.5s_0002.tif"],
        ["sampleB_exp0.5s_0000.tif", "sampleB_exp0.5s_0001.tif", "sampleB_exp0.5s_0002.tif"],
        ["stack.tif"],
    ]
    g = Grouping("series")
    assert g.stem("sampleA_exp0.5s_0002.tif") == "sampleA_exp0.5s"
    assert g.stem("stack.tif") == "stack"


def test_series_are_per_directory_and_unnumbered_files_are_single_runs():
    paths = ["/x/s_1.tif", "/y/s_1.tif", "/x/s_2.TIFF", "/x/s.tif", "/x/notes.tif"]
    runs = Grouping("series").split(paths)
    assert sorted(runs) == sorted(
        [("/x/s_1.tif", "/x/s_2.TIFF"), ("/x/s.tif",), ("/x/notes.tif",), ("/y/s_1.tif",)]
    )


def test_series_number_takes_every_trailing_digit():
    g = Grouping("series")
    assert g.stem("scan_001_0010.tif") == "scan_001"
    assert g.stem("img10.tiff") == "img"
    assert names(g.split(["/d/scan_001_0010.tif", "/d/scan_001_0009.tif"])) == [
        ["scan_001_0009.tif", "scan_001_0010.tif"]
    ]


def test_file_mode_is_one_run_per_file():
    assert Grouping("file").split(["/d/b.tif", "/d/a.tif"]) == [("/d/a.tif",), ("/d/b.tif",)]


def test_regex_grouping_with_stem_and_index():
    g = Grouping(r"(?P<stem>[a-z]+)-run(?P<index>\d+)-")
    paths = ["/d/cell-run10-x.tif", "/d/cell-run9-y.tif", "/d/dust-run1-z.tif", "/d/odd.tif"]
    assert names(g.split(paths)) == [
        ["cell-run9-y.tif", "cell-run10-x.tif"],
        ["dust-run1-z.tif"],
        ["odd.tif"],
    ]
    compiled = Grouping(re.compile(r"(?P<stem>[a-z]+)-run(?P<index>\d+)-"))
    assert compiled.split(paths) == g.split(paths)


def test_regex_without_stem_group_or_invalid_is_a_clear_error():
    with pytest.raises(ValueError, match="named group 'stem'"):
        Grouping(r"(\w+)_\d+")
    with pytest.raises(ValueError, match="neither one of"):
        Grouping("([unclosed")
    with pytest.raises(TypeError, match="group_by"):
        Grouping(3)


def test_grouping_pickles_and_compares():
    g = Grouping(r"(?P<stem>.+)_\d+")
    h = pickle.loads(pickle.dumps(g))
    assert h == g and hash(h) == hash(g)
    assert h.split(["/d/a_1.tif"]) == [("/d/a_1.tif",)]
    assert Grouping("series") != Grouping("directory")


def test_natural_key():
    words = ["a10", "a2", "A1", "b", "a2b", "10"]
    assert sorted(words, key=natural_key) == ["10", "A1", "a2", "a2b", "a10", "b"]
