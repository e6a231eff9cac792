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
    assert lines[3:] == ["start", "descriptor", "event_page", "stop"]
