"""The intake-bluesky test matrix.

``nox`` runs the default sessions: ``lint``, ``tests(<package>)`` for every
package under ``packages/`` (each alone with the core, so a dependency leaking
into the core fails), ``all_together``, ``build`` and ``docs`` (the API
reference site, warnings as errors). ``nox -s bench`` runs the
benchmarks; ``nox -s mongo_real`` runs the Mongo tests against a real server
named by ``INTAKE_BLUESKY_TEST_MONGO_URI``; ``nox -s roundtrip_thorough`` runs
the conformance kit's Hypothesis round trip with many more random runs.
"""

from __future__ import annotations

import os
import pathlib
import sys

import nox

ROOT = pathlib.Path(__file__).parent
PACKAGES_DIR = ROOT / "packages"
CORE = "intake-bluesky-core"
PACKAGES = sorted(p.name for p in PACKAGES_DIR.iterdir() if (p / "pyproject.toml").exists())

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = not os.environ.get("CI")


def _test_group(package: str) -> list[str]:
    toml = nox.project.load_toml(PACKAGES_DIR / package / "pyproject.toml")
    return list(nox.project.dependency_groups(toml, "test"))


def _test_packages(package: str) -> list[str]:
    """Sibling packages a package's tests read with (never its runtime
    dependencies): ``[tool.intake-bluesky] test-packages`` in its pyproject.
    The tiled backend's tests read detector files with intake-bluesky-hdf5
    and serve stores of every other backend."""
    toml = nox.project.load_toml(PACKAGES_DIR / package / "pyproject.toml")
    return list(toml.get("tool", {}).get("intake-bluesky", {}).get("test-packages", []))


def _install(session: nox.Session, packages: list[str]) -> None:
    # One resolver run: the backends' declared range on the core is checked
    # against the core in this checkout.
    siblings = [s for p in packages for s in _test_packages(p)]
    paths = [str(PACKAGES_DIR / p) for p in dict.fromkeys([CORE, *packages, *siblings])]
    groups = [req for p in packages for req in _test_group(p)]
    session.install(*paths, *groups)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (check and format) and mypy (configured in pyproject.toml)."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # mypy reads the sources; the packages are installed for their
    # dependencies' types (the kit's pytest and hypothesis, the TIFF reader's
    # optional Pillow included), with stubs for those that ship none.
    session.install(
        "mypy",
        *[str(PACKAGES_DIR / p) for p in PACKAGES],
        "pytest",
        "hypothesis",
        "pillow",
        "types-PyYAML",
        "types-tqdm",
        "types-python-dateutil",
        "pandas-stubs",
        "msgpack-types",
        # The serving side of intake-bluesky-tiled (its server extra) and the
        # serve command's server.
        "tiled[server]",
        "bluesky-tiled-plugins",
        "uvicorn",
    )
    session.run("mypy")


#: The core's tests that need backends installed beside it (CLI over real
#: stores, exports): run by ``all_together`` only.
INTEGRATION = PACKAGES_DIR / CORE / "tests" / "integration"


def _modules(package: str) -> list[str]:
    """The importable names a package ships (``intake_bluesky.<name>``)."""
    src = PACKAGES_DIR / package / "src" / "intake_bluesky"
    return [
        f"intake_bluesky.{p.name}" for p in sorted(src.iterdir()) if (p / "__init__.py").exists()
    ]


def _pytest_args(packages: list[str]) -> list[str]:
    # The doctests of the installed modules (--pyargs: the session installs
    # the packages, not in editable mode, so src/ is not what is imported),
    # then each package's tests folder.
    return [
        "--doctest-modules",
        "--pyargs",
        *[module for p in packages for module in _modules(p)],
        *[str(PACKAGES_DIR / p / "tests") for p in packages],
    ]


@nox.session
@nox.parametrize("package", PACKAGES, ids=PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package with the core alone: its tests and its doctests."""
    _install(session, [package])
    session.run("pytest", *_pytest_args([package]), f"--ignore={INTEGRATION}", *session.posargs)


@nox.session
def all_together(session: nox.Session) -> None:
    """Every package in one environment: namespace merge and entry points,
    the core's integration tests, and every package's doctests."""
    _install(session, PACKAGES)
    session.run("pytest", *_pytest_args(PACKAGES), *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Build each package's wheel and sdist and check what each wheel holds."""
    session.install("build")
    out = pathlib.Path(session.create_tmp()) / "dist"
    for package in PACKAGES:
        session.run(
            "python", "-m", "build", "--outdir", str(out / package), str(PACKAGES_DIR / package)
        )
    session.run("python", str(ROOT / "tools" / "check_dists.py"), str(out), *PACKAGES)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks, reported as ratios to the floor and to databroker 1.2.5."""
    session.install(
        *[str(PACKAGES_DIR / p) for p in PACKAGES], "-r", "benchmarks/requirements.txt"
    )
    anchor = ROOT / ".nox" / "_databroker_1_2_5"
    anchor_python = anchor / "bin" / "python"
    if not anchor_python.exists():
        # databroker 1.2.5 needs old pins (intake<=0.6.4, numpy<2): its own venv.
        session.run(sys.executable, "-m", "venv", str(anchor), external=True)
        session.run(
            str(anchor_python),
            "-m",
            "pip",
            "install",
            "-q",
            "-r",
            "benchmarks/anchor-requirements.txt",
            external=True,
        )
    # The stream-data peer (tiled + bluesky-tiled-plugins): its own venv too.
    peer = ROOT / ".nox" / "_tiled_peer"
    peer_python = peer / "bin" / "python"
    if not peer_python.exists():
        session.run(sys.executable, "-m", "venv", str(peer), external=True)
        session.run(
            str(peer_python), "-m", "pip", "install", "-q",
            "-r", "benchmarks/tiled-requirements.txt", external=True,
        )  # fmt: skip
    session.run(
        "python",
        "benchmarks/run.py",
        "--anchor-python",
        str(anchor_python),
        "--tiled-python",
        str(peer_python),
        *session.posargs,
    )


@nox.session(default=False)
def mongo_real(session: nox.Session) -> None:
    """The Mongo tests against your server (INTAKE_BLUESKY_TEST_MONGO_URI).

    The default ``tests`` session runs them on mongomock and on an in-process
    SecantusDB server; here the URI's server takes SecantusDB's place and the
    mongomock runs are left out.
    """
    if not os.environ.get("INTAKE_BLUESKY_TEST_MONGO_URI"):
        session.skip("INTAKE_BLUESKY_TEST_MONGO_URI is not set; no real MongoDB to test against")
    _install(session, ["intake-bluesky-mongo"])
    session.run(
        "pytest",
        str(PACKAGES_DIR / "intake-bluesky-mongo" / "tests"),
        "-k",
        "not mongomock",
        *session.posargs,
    )


@nox.session(default=False)
def roundtrip_thorough(session: nox.Session) -> None:
    """The conformance kit's round trip of random runs, thoroughly.

    The default ``tests`` sessions run a fixed set of a few dozen runs per
    backend; this one draws new random runs each time, 1,000 per backend
    (``INTAKE_BLUESKY_HYPOTHESIS_PROFILE=thorough``; any registered Hypothesis
    profile name works too).
    """
    _install(session, PACKAGES)
    session.run(
        "pytest",
        *[str(PACKAGES_DIR / p / "tests") for p in PACKAGES],
        "-k",
        "random_runs_round_trip",
        *session.posargs,
        env={
            "INTAKE_BLUESKY_HYPOTHESIS_PROFILE": os.environ.get(
                "INTAKE_BLUESKY_HYPOTHESIS_PROFILE", "thorough"
            )
        },
    )


@nox.session
def docs(session: nox.Session) -> None:
    """The API reference site (mkdocs + mkdocstrings), warnings as errors."""
    session.install(*[str(PACKAGES_DIR / p) for p in PACKAGES], "mkdocs", "mkdocstrings-python")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(session.create_tmp()) + "/site")
