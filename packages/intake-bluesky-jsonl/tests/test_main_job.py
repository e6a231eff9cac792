"""The README's main-job command: examples/jsonl_tour.py runs as written."""

import pathlib
import re
import subprocess
import sys

import numpy as np

from intake_bluesky.jsonl import BlueskyJSONLCatalog

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_main_job_command_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    assert "python3 examples/jsonl_tour.py" in readme


def test_jsonl_tour_runs_and_its_files_read_back(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "jsonl_tour.py"), str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert lines[0] == f"4 runs in {tmp_path}"
    assert lines[1] == "2 runs on copper: scan_ids [1, 3]"
    assert "peak at motor = +0.00" in lines
    # The tour writes single events (as suitcase-jsonl stores a step scan):
    # canonical() gives them back as stored.
    assert lines[-1] == (
        "canonical documents: {'start': 1, 'descriptor': 1, 'event': 11, 'stop': 1}"
    )
    assert not out.stderr
    # What it wrote is real suitcase-style JSONL that reads back with values.
    cat = BlueskyJSONLCatalog(str(tmp_path))
    assert len(list(tmp_path.glob("*.jsonl"))) == 4
    ds = cat[3].primary.read()
    np.testing.assert_allclose(ds["motor"].values, np.linspace(-1, 1, 11))
    assert ds["img"].dtype == np.uint16 and ds["img"].dims == ("time", "y", "x")
    assert re.search(r"scan_id=3", repr(cat[3]))
