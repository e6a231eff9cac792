"""The monorepo's packaging rules, checked from the installed core."""

import pathlib
import subprocess
import sys

import intake_bluesky

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_intake_bluesky_is_a_namespace_package():
    # PEP 420: no distribution may ship intake_bluesky/__init__.py.
    assert getattr(intake_bluesky, "__file__", None) is None
    assert not list(REPO.glob("packages/*/src/intake_bluesky/__init__.py"))
    for pkg in REPO.glob("packages/*/src/intake_bluesky"):
        portions = [p.name for p in pkg.iterdir() if not p.name.startswith((".", "__pycache__"))]
        assert len(portions) == 1, f"{pkg} must hold exactly one portion, holds {portions}"


def test_core_imports_no_backend_dependency():
    # A fresh interpreter: modules imported by other tests must not hide a leak.
    code = (
        "import sys, intake_bluesky.core, intake_bluesky.core.testing;"
        "print(sorted(m for m in ('pymongo', 'msgpack', 'tifffile', 'orjson', 'mongomock')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
