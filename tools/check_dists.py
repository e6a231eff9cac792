"""Check the wheels and sdists built by ``nox -s build``.

Each wheel must hold only its own portion of the ``intake_bluesky``
namespace (never ``intake_bluesky/__init__.py``) and declare its
dependencies; a backend must depend on the core by a bounded range.

Usage: ``python tools/check_dists.py DIST_DIR PACKAGE [PACKAGE ...]`` where
``DIST_DIR/<package>/`` holds that package's wheel and sdist.
"""

from __future__ import annotations

import email.parser
import pathlib
import re
import sys
import tarfile
import tomllib
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def check(dist_dir: pathlib.Path, package: str) -> list[str]:
    problems = []
    pyproject = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())
    declared = {_name(r) for r in pyproject["project"].get("dependencies", [])}
    portion = package.removeprefix("intake-bluesky-")
    wheels = list((dist_dir / package).glob("*.whl"))
    sdists = list((dist_dir / package).glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"{package}: expected one wheel and one sdist, found {wheels + sdists}"]
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(whl.read(metadata_name).decode())
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        entry_text = whl.read(entry_points).decode() if entry_points else ""
    for name in names:
        if ".dist-info/" in name:
            continue
        if name == "intake_bluesky/__init__.py":
            problems.append(f"{package}: wheel ships intake_bluesky/__init__.py")
        elif not name.startswith(f"intake_bluesky/{portion}/"):
            problems.append(f"{package}: wheel holds {name}, outside intake_bluesky/{portion}/")
    requires = metadata.get_all("Requires-Dist") or []
    runtime = {_name(r) for r in requires if "extra ==" not in r}
    if runtime != declared:
        problems.append(
            f"{package}: wheel requires {sorted(runtime)}, pyproject {sorted(declared)}"
        )
    if package != "intake-bluesky-core":
        core = [r for r in requires if _name(r) == "intake-bluesky-core"]
        if not core or "<" not in core[0] or ">=" not in core[0]:
            problems.append(f"{package}: must require intake-bluesky-core by a range, has {core}")
    # A backend registers its catalogs with intake; a package of stream
    # readers only (intake-bluesky-hdf5) registers readers instead.
    if (
        "[intake.drivers]" not in entry_text
        and "[intake_bluesky.stream_readers]" not in entry_text
    ):
        problems.append(
            f"{package}: no intake.drivers nor intake_bluesky.stream_readers entry points"
        )
    problems += _check_reader_names(package, entry_text)
    with tarfile.open(sdists[0]) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    for needed in ("pyproject.toml", "README.md", "CHANGELOG.md"):
        if needed not in members:
            problems.append(f"{package}: sdist lacks {needed}")
    if not any(m.startswith(f"src/intake_bluesky/{portion}/") for m in members):
        problems.append(f"{package}: sdist lacks src/intake_bluesky/{portion}/")
    print(f"{package}: {wheels[0].name}, {sdists[0].name}: {len(names)} files in the wheel")
    return problems


def _check_reader_names(package: str, entry_text: str) -> list[str]:
    """Stream readers are looked up by mimetype; a name with '=' would be cut there."""
    problems, section = [], None
    for line in entry_text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "intake_bluesky.stream_readers" and "=" in line:
            name, _, value = line.partition("=")
            if ":" not in value or "=" in value:
                problems.append(
                    f"{package}: stream reader entry point {line!r} is malformed (an '=' in its "
                    "name? write it %3D)"
                )
    return problems


def main(argv: list[str]) -> int:
    dist_dir = pathlib.Path(argv[0])
    problems = [p for package in argv[1:] for p in check(dist_dir, package)]
    for problem in problems:
        print("ERROR:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
