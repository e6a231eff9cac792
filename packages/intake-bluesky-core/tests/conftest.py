"""Fixtures of the command-line tests: ``intake-bluesky`` in this process
(``cli``) and the installed script in a subprocess (``script``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
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


# Python's warning filters when no -W option or PYTHONWARNINGS is given: what
# the installed script runs with (pytest's own filters must not apply).
_PYTHON_DEFAULT_FILTERS = [
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, None),
    ("ignore", PendingDeprecationWarning, None),
    ("ignore", ImportWarning, None),
    ("ignore", ResourceWarning, None),
]


class _Runner:
    """``ok`` and ``fails`` over a ``__call__`` giving a CompletedProcess."""

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


class CLI(_Runner):
    """Runs ``intake-bluesky`` in this process: ``main(argv)``.

    As the script would run: its own environment variables (``env``; a
    ``PYTHONPATH`` there is put on ``sys.path``), working directory,
    Python's default warning filters, and the on-disk index of file catalogs
    in ``index``, not in the user's cache. An exception that ``main`` lets
    through fails the test with its traceback (the script would print it).
    """

    def __init__(self, index: Path, capsys, monkeypatch):
        self.index = index
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def __call__(self, *args, env=None, cwd=None) -> subprocess.CompletedProcess:
        from intake_bluesky.core._cli.main import main

        argv = [str(a) for a in args]
        env = {"INTAKE_BLUESKY_INDEX": str(self.index), **(env or {})}
        paths = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p]
        before = set(sys.modules)
        self._capsys.readouterr()  # only this run's output
        with self._monkeypatch.context() as m, warnings.catch_warnings():
            for name, value in env.items():
                m.setenv(name, value)
            for path in reversed(paths):
                m.syspath_prepend(path)
            if cwd is not None:
                m.chdir(cwd)
            warnings.resetwarnings()
            for action, category, module in reversed(_PYTHON_DEFAULT_FILTERS):
                warnings.filterwarnings(action, category=category, module=module or "")
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse: --help, usage errors
                code = exit_.code
            finally:
                # Modules of the test's PYTHONPATH go with it (the next test
                # may write another module of the same name).
                for name in set(sys.modules) - before:
                    path = getattr(sys.modules[name], "__file__", None) or ""
                    if any(path.startswith(p) for p in paths):
                        del sys.modules[name]
        out, err = self._capsys.readouterr()
        if code is None:
            code = 0
        elif not isinstance(code, int):
            err, code = f"{err}{code}\n", 1
        return subprocess.CompletedProcess(["intake-bluesky", *argv], code, out, err)


class Script(_Runner):
    """Runs the installed ``intake-bluesky`` script in a subprocess.

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


@pytest.fixture(scope="session")
def cli_index(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-index") / "file-index.sqlite"


@pytest.fixture
def cli(cli_index, capsys, monkeypatch) -> CLI:
    """``intake-bluesky`` in this process (fast: no interpreter start-up)."""
    return CLI(cli_index, capsys, monkeypatch)


@pytest.fixture(scope="session")
def script(cli_index) -> Script:
    """``intake-bluesky`` as installed, in a subprocess (the smoke tests)."""
    return Script(cli_index)


@pytest.fixture
def private_index(tmp_path, monkeypatch):
    """Catalogs opened in this process index into the test's own file."""
    monkeypatch.setenv("INTAKE_BLUESKY_INDEX", str(tmp_path / "file-index.sqlite"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
