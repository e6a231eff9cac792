"""Fixtures of the command-line tests: the installed ``intake-bluesky`` script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _script() -> str:
    # The console script installed beside this interpreter (the real entry
    # point, as a user runs it), else one on PATH.
    here = Path(sys.executable).parent / "intake-bluesky"
    found = str(here) if here.exists() else shutil.which("intake-bluesky")
    if not found:
        pytest.fail("the intake-bluesky console script is not installed")
    return found


class CLI:
    """Runs ``intake-bluesky`` in a subprocess.

    The subprocess keeps its on-disk index of file catalogs in ``index``, not
    in the user's cache (tests must not write there, nor race other processes
    over it).
    """

    def __init__(self, index: Path):
        self.script = _script()
        self.index = index

    def __call__(self, *args, env=None, cwd=None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "INTAKE_BLUESKY_INDEX": str(self.index), **(env or {})}
        # Warnings and progress bars must not depend on the caller's terminal.
        full_env.pop("PYTHONWARNINGS", None)
        return subprocess.run(
            [self.script, *map(str, args)],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd,
            timeout=120,
        )

    def ok(self, *args, **kwargs) -> str:
        result = self(*args, **kwargs)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def fails(self, *args, code=1, **kwargs) -> str:
        """Run, expect a user error: status ``code``, one message, no traceback."""
        result = self(*args, **kwargs)
        assert result.returncode == code, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip(), "an error must say what went wrong on stderr"
        return result.stderr


@pytest.fixture(scope="session")
def cli(tmp_path_factory) -> CLI:
    return CLI(tmp_path_factory.mktemp("cli-index") / "file-index.sqlite")


@pytest.fixture
def private_index(tmp_path, monkeypatch):
    """Catalogs opened in this process index into the test's own file."""
    monkeypatch.setenv("INTAKE_BLUESKY_INDEX", str(tmp_path / "file-index.sqlite"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
