"""The registry's table of known distributions, and how the command line asks
backends to recognise a store (``guess_can_open``/``open_store``)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog, FileFormat
from intake_bluesky.core import _registry as registry
from intake_bluesky.core._cli import stores
from intake_bluesky.core._cli.errors import CLIError
from intake_bluesky.core._files.driver import holds_files

GROUPS = (
    registry.BACKEND_GROUP,
    registry.WRITER_GROUP,
    registry.READER_GROUP,
    registry.HANDLER_GROUP,
)


@pytest.mark.parametrize("group", GROUPS)
def test_the_table_says_who_provides_what_is_installed(group):
    """Every entry point of a known distribution that is installed here is in
    the table, under that distribution (the table cannot drift unseen)."""
    for ep in entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else None
        if dist not in registry.KNOWN_DISTRIBUTIONS:
            continue
        name = ep.name.replace("%3D", "=").replace("%25", "%")
        assert registry.provider(group, name) == dist, (group, ep.name)


def test_install_hints_come_from_the_table():
    assert registry.known_names(registry.BACKEND_GROUP)["tiff"] == "intake-bluesky-tiff"
    assert registry.known_suffixes()[".msgpack"] == "intake-bluesky-msgpack"
    assert registry.known_uri_schemes()["mongodb://"] == "intake-bluesky-mongo"
    assert registry.checkout_hint("intake-bluesky-tiff") == (
        "from a checkout of intake-bluesky, while the packages are not on PyPI: "
        "python3 -m pip install ./packages/intake-bluesky-core ./packages/intake-bluesky-tiff"
    )


def test_holds_files(tmp_path):
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "a.lines").write_text("")
    assert not holds_files(tmp_path, (".lines",))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.LINES").write_text("")
    assert holds_files(tmp_path, (".lines",))
    assert holds_files(tmp_path / "sub" / "b.LINES", (".lines",))
    assert holds_files(f"{tmp_path}/*", (".lines",))
    assert not holds_files(f"{tmp_path}/*.txt", (".lines",))
    assert not holds_files(tmp_path / "missing", (".lines",))
    assert not holds_files("mongodb://host/db", (".lines",))
    assert not holds_files(tmp_path, ())


class Lines(FileFormat):
    suffixes = (".lines",)


class LinesCatalog(BlueskyInMemoryCatalog):
    """Recognises .lines files; opens as an empty in-memory catalog."""

    opened: list = []

    @classmethod
    def guess_can_open(cls, store) -> bool:
        return Lines.guess_can_open(store)

    @classmethod
    def open_store(cls, store, *, layout=None, **common):
        cls.opened.append((store, layout, common))
        return cls(**common)


class SchemeCatalog(BlueskyInMemoryCatalog):
    @classmethod
    def guess_can_open(cls, store) -> bool:
        return str(store).startswith("lines://")

    @classmethod
    def open_store(cls, store, *, root_map=None):
        return cls(root_map=root_map)


class _EP:
    def __init__(self, cls):
        self.cls, self.value = cls, f"{cls.__module__}:{cls.__qualname__}"

    def load(self):
        return self.cls


@pytest.fixture
def installed(monkeypatch):
    """Install only the given backend classes, as the command line sees them."""

    def install(**classes):
        eps = {name: _EP(cls) for name, cls in classes.items()}
        monkeypatch.setattr(stores, "entry_point_objects", lambda group: eps)
        monkeypatch.setattr(stores, "backends", lambda: dict(classes))
        LinesCatalog.opened = []

    return install


def test_the_backend_that_recognises_the_store_opens_it(installed, tmp_path):
    installed(lines=LinesCatalog, scheme=SchemeCatalog)
    (tmp_path / "a.lines").write_text("")
    cat = stores.open_store(str(tmp_path), layout="x", root_map={"/a": "/b"})
    assert isinstance(cat, LinesCatalog)
    assert LinesCatalog.opened == [(str(tmp_path), "x", {"root_map": {"/a": "/b"}})]
    assert isinstance(stores.open_store("lines://host/db"), SchemeCatalog)


def test_an_option_the_backend_does_not_take(installed, tmp_path):
    installed(scheme=SchemeCatalog)
    with pytest.raises(CLIError, match="--assets does not apply to the scheme backend"):
        stores.open_store("lines://host/db", assets="a")


def test_several_backends_recognise_the_store(installed, tmp_path):
    class Other(LinesCatalog):
        pass

    installed(lines=LinesCatalog, other=Other)
    (tmp_path / "a.lines").write_text("")
    with pytest.raises(CLIError, match=r"several formats \(read by lines, other\)"):
        stores.open_store(str(tmp_path))
    assert isinstance(stores.open_store(str(tmp_path), backend="other"), Other)


def test_a_known_backend_not_installed_is_named_with_its_package(installed, tmp_path):
    installed(lines=LinesCatalog)
    (tmp_path / "run.msgpack").write_bytes(b"")
    with pytest.raises(CLIError, match="pip install intake-bluesky-msgpack"):
        stores.open_store(str(tmp_path))
    with pytest.raises(CLIError, match="pip install intake-bluesky-mongo") as info:
        stores.open_store("mongodb://alice:pw@host/db")
    assert "pw" not in str(info.value)


def test_nothing_recognises_the_store(installed, tmp_path):
    installed(lines=LinesCatalog)
    with pytest.raises(CLIError, match="no run files found"):
        stores.open_store(str(tmp_path))
    with pytest.raises(CLIError, match="no such file"):
        stores.open_store(str(tmp_path / "missing"))
    with pytest.raises(CLIError, match="No installed backend reads s3:// URIs") as info:
        stores.open_store("s3://key:secret@bucket/runs")
    assert "secret" not in str(info.value)


def test_a_backend_without_open_store(installed, tmp_path):
    installed(memory=BlueskyInMemoryCatalog)
    with pytest.raises(CLIError, match="cannot be opened from a path"):
        stores.open_store(str(tmp_path), backend="memory")
    with pytest.raises(CLIError, match="does not read mongodb:// URIs"):
        stores.open_store("mongodb://host/db", backend="memory")
    with pytest.raises(CLIError, match="--layout does not apply to the memory backend"):
        stores.open_store(str(tmp_path), backend="memory", layout="embedded")
