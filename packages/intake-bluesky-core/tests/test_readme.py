"""The README's tour runs as written and prints what it says."""

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def test_readme_tour_runs_as_written():
    text = README.read_text()
    block = re.search(r"## A five-minute tour.*?```python\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["2 runs on copper", "[30. 31. 32. 33. 34.]", "12.0"]
    # The events were stored one by one: canonical() gives them back so.
    assert lines[3:11] == ["start", "descriptor"] + ["event"] * 5 + ["stop"]
    table = block.split('events.primary"]])\n', 1)[1].split("\n\n", 1)[0]
    expected_table = [line[2:] for line in table.splitlines()]
    assert lines[11:15] == expected_table
    assert lines[15:] == ["Cu success", "[2, 3]", "1"]
