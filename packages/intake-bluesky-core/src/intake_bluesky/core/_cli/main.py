"""Argument parsing, dispatch and Unix-style error reporting."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
import warnings

from .._registry import KNOWN_DISTRIBUTIONS, WRITER_GROUP, known_names
from . import diff, serve
from .argtypes import positive
from .errors import CLIError

__all__ = ["build_parser", "main"]

PROG = "intake-bluesky"

_DESCRIPTION = """\
List, show, compare, export and serve bluesky runs from any store intake-bluesky reads.

STORE is one of:
  a directory, file or glob of run files   the backend is picked from the file
                                           names (.jsonl, .msgpack, .tif/.tiff)
                                           or named with --backend
  a MongoDB URI naming the database        mongodb://host:27017/mds; the layout
                                           (normalized: run_start, embedded:
                                           header) is detected, or --layout
  a tiled URI of a container of runs       https://host/api/v1/metadata/raw
                                           (intake-bluesky-tiled; api key from
                                           TILED_API_KEY)
  a YAML intake catalog file               with --entry NAME if it has several
"""

_EPILOG = """\
examples:
  intake-bluesky ls data/
  intake-bluesky ls mongodb://localhost:27017/mds --since 2026-01-01 --limit 20
  intake-bluesky ls data/ --search '{"sample": "Cu"}' --fields sample,motors --json
  intake-bluesky show data/ -1
  intake-bluesky show data/ a1b2c3 --documents > run.jsonl
  intake-bluesky export mongodb://db.facility/mds ~/runs --search '{"proposal_id": 42}'
  intake-bluesky export data/ packed/ 17 18 --format msgpack --copy-external
  intake-bluesky diff data/ -2 -1
  intake-bluesky serve data/ --host 0.0.0.0 --workers 4

Run `intake-bluesky COMMAND --help` for each command's options.
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=min(shutil.get_terminal_size().columns, 80) - 2)


def _store_backends() -> list[str]:
    """The known backends that read a path or URI (from the registry's table)."""
    return [
        name
        for known in KNOWN_DISTRIBUTIONS.values()
        if known.suffixes or known.uri_schemes
        for name in known.backends
    ]


def _store_options(parser: argparse.ArgumentParser, *, format_alias: bool) -> None:
    group = parser.add_argument_group("store")
    names = ["-b", "--backend"] + (["--format"] if format_alias else [])
    group.add_argument(
        *names,
        dest="backend",
        metavar="NAME",
        help=f"the backend reading STORE: {', '.join(_store_backends())} (default: the one "
        "that recognises the files found, or the URI)",
    )
    group.add_argument(
        "--layout",
        choices=["normalized", "embedded"],
        help="MongoDB layout (default: detected from the collections)",
    )
    group.add_argument(
        "--assets",
        metavar="URI",
        help="MongoDB URI of the asset registry database (normalized layout; default: STORE)",
    )
    group.add_argument("--entry", metavar="NAME", help="the entry of a YAML catalog file")
    group.add_argument(
        "--root-map",
        metavar="OLD=NEW",
        action="append",
        default=[],
        help="external files stored under OLD are now under NEW (repeatable)",
    )


def _selection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("selection")
    group.add_argument(
        "--search",
        metavar="JSON",
        help='a MongoDB query on start documents, e.g. \'{"plan_name": "scan"}\'',
    )
    group.add_argument("--since", metavar="TIME", help="runs started at or after TIME (ISO)")
    group.add_argument("--until", metavar="TIME", help="runs started before TIME (ISO)")
    group.add_argument(
        "--timezone", metavar="TZ", help="time zone of --since/--until (default: local)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``intake-bluesky`` (its ``--help`` has examples)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    ls = commands.add_parser(
        "ls",
        help="the table of runs, newest last",
        description="The table of runs in STORE, newest last.",
        epilog="examples:\n"
        "  intake-bluesky ls data/\n"
        "  intake-bluesky ls data/ --since 2026-03-01 --until 2026-03-08\n"
        '  intake-bluesky ls mongodb://localhost/mds --search \'{"scan_id": {"$gt": 100}}\'\n'
        "  intake-bluesky ls data/ --limit 5 --fields sample.name,operator --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument("store", metavar="STORE")
    _store_options(ls, format_alias=True)
    _selection_options(ls)
    ls.add_argument("--limit", type=positive, metavar="N", help="only the N most recent runs")
    ls.add_argument(
        "--fields",
        metavar="A,B.C",
        default="",
        help="more columns: start document keys, dotted for nested ones",
    )
    ls.add_argument("--json", action="store_true", help="one JSON object per run and line")

    show = commands.add_parser(
        "show",
        help="one run: metadata, streams, fields, shapes, dtypes, event counts",
        description=_wrap(
            "One run of STORE: start/stop essentials, its streams with their fields, "
            "shapes, dtypes and event counts (no event data is read). RUN is a uid, a partial "
            "uid (its beginning), -N (the N-th most recent run) or a scan_id."
        ),
        epilog="examples:\n"
        "  intake-bluesky show data/ -1\n"
        "  intake-bluesky show data/ 1b3384cd\n"
        "  intake-bluesky show mongodb://localhost/mds 1234 --json\n"
        "  intake-bluesky show data/ -1 --documents | head",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("store", metavar="STORE")
    show.add_argument("run", metavar="RUN")
    _store_options(show, format_alias=True)
    show.add_argument(
        "--documents",
        action="store_true",
        help="print the canonical document stream, one [name, doc] JSON array per line",
    )
    show.add_argument(
        "--fill",
        action="store_true",
        help="with --documents: load external data into the events",
    )
    show.add_argument("--json", action="store_true", help="the summary as one JSON object")

    export = commands.add_parser(
        "export",
        help="write runs as JSONL, msgpack or NeXus files (optionally with their external files)",
        description=_wrap(
            "Write runs of STORE into the directory DEST, one <uid>.jsonl (or "
            ".msgpack) file per run, as suitcase-jsonl / suitcase-msgpack write them, or one "
            "NeXus .nxs file per run (--format nexus, from intake-bluesky-hdf5). With no "
            "RUN and no selection option, every run is exported. Each file is written under a "
            "temporary name and renamed when complete; existing run files are never "
            "overwritten unless --overwrite is given. A uid that is not a plain file name "
            "(holding '/', or beginning with '.') is percent-escaped in the file name: "
            "nothing is ever written outside DEST."
        ),
        epilog="examples:\n"
        "  intake-bluesky export mongodb://localhost/mds ./runs\n"
        "  intake-bluesky export mongodb://localhost/mds ./runs --search "
        "'{\"proposal_id\": 42}' --copy-external\n"
        "  intake-bluesky export data/ ./packed -1 -2 --format msgpack\n"
        "  intake-bluesky export data/ ./home -1 --format nexus --link-external\n"
        "  intake-bluesky export data/ ./packed --since 2026-03-01 --skip-existing",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("store", metavar="STORE")
    export.add_argument("dest", metavar="DEST", help="the directory to write into")
    export.add_argument(
        "runs", metavar="RUN", nargs="*", help="uid, partial uid, -N or scan_id (default: all)"
    )
    _store_options(export, format_alias=False)
    _selection_options(export)
    export.add_argument(
        "--format",
        dest="out_format",
        default="jsonl",
        metavar="FORMAT",
        help=f"{' or '.join(known_names(WRITER_GROUP))} (default: %(default)s)",
    )
    export.add_argument(
        "--copy-external",
        action="store_true",
        help="copy the files that resources and stream_resources point at (only from inside "
        "the roots they name) into DEST/external/, rewrite their locations, and write "
        "DEST/catalog.yml: a self-contained export that opens wherever it is moved to "
        "(intake-bluesky ls DEST, or intake.open_catalog('DEST/catalog.yml'))",
    )
    export.add_argument(
        "--link-external",
        action="store_true",
        help="refer to the external (detector) files from each run file instead of copying "
        "their data into it; only formats that can (nexus: HDF5 virtual datasets)",
    )
    existing = export.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace run files that already exist (and copied external files that differ)",
    )
    existing.add_argument(
        "--skip-existing", action="store_true", help="leave run files that exist as they are"
    )
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    diff.add_parser(commands, lambda p: _store_options(p, format_alias=True))
    serve.add_parser(commands, lambda p: _store_options(p, format_alias=True))
    return parser


def _root_map(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise CLIError(f"--root-map {pair!r}: write it as OLD=NEW (two paths).")
        out[old] = new
    return out


def _query(args) -> dict:
    from .timeq import time_query

    query = {}
    if getattr(args, "search", None):
        try:
            query = json.loads(args.search)
        except json.JSONDecodeError as err:
            raise CLIError(f"--search is not valid JSON ({err}): {args.search!r}") from None
        if not isinstance(query, dict):
            raise CLIError(
                f"--search must be a JSON object (a MongoDB query), not {args.search!r}."
            )
    times = time_query(
        getattr(args, "since", None), getattr(args, "until", None), getattr(args, "timezone", None)
    )
    if times and query:
        return {"$and": [query, times]}
    return times or query


def _open(args):
    from .stores import open_store

    return open_store(
        args.store,
        backend=args.backend,
        layout=args.layout,
        assets=args.assets,
        entry=args.entry,
        root_map=_root_map(args.root_map),
    )


def _selected(cat, args):
    query = _query(args)
    return cat.search(query) if query else cat


def _cmd_ls(args) -> int:
    from .listing import print_rows, run_rows

    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    warned = _WARNINGS["count"]
    cat = _selected(_open(args), args)
    rows = run_rows(cat, fields=fields, limit=args.limit)
    print_rows(rows, fields, args.json)
    # No runs, and the store said why (run files in subfolders, files of
    # another format): a failure a script must see, not an empty success.
    return 1 if not rows and _WARNINGS["count"] > warned else 0


def _run_key(key: str):
    return key


def _cmd_show(args) -> int:
    from .showing import print_documents, print_summary, summary

    if args.fill and not args.documents:
        raise CLIError("--fill applies to --documents only.")
    run = _open(args)[_run_key(args.run)]
    if args.documents:
        print_documents(run, "yes" if args.fill else "no")
    else:
        print_summary(summary(run), args.json)
    return 0


def _cmd_export(args) -> int:
    from ..export import export_runs
    from .progress import progress_for

    cat = _open(args)
    selected = _selected(cat, args)
    if args.runs:
        runs, seen = [], set()
        for key in args.runs:
            run = selected[_run_key(key)]
            if run.uid not in seen:
                seen.add(run.uid)
                runs.append(run)
    else:
        try:
            runs = list(selected.values())
        except KeyError as err:  # listed, but not found by its own key
            key = err.args[0] if err.args else None
            why = (
                ""
                if isinstance(key, str)
                else f": its start uid is not a string (type {type(key).__name__})"
            )
            raise CLIError(
                f"Run {key!r} is listed in {args.store} but cannot be opened{why}. Nothing was "
                "written. Leave it out: name the runs to export, or select them with --search."
            ) from None
    if not runs:
        raise CLIError("No runs match; nothing to export.")
    existing = "overwrite" if args.overwrite else "skip" if args.skip_existing else "error"
    with progress_for(runs, enabled=not args.quiet) as progress:
        export_runs(
            runs,
            args.dest,
            format=args.out_format,
            copy_external=args.copy_external,
            link_external=args.link_external,
            existing=existing,
            progress=progress,
            on_written=lambda path: print(path, flush=True),
        )
    return 0


def _cmd_diff(args) -> int:
    return diff.run_command(args, _open)


def _cmd_serve(args) -> int:
    return serve.run_command(args)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


_COMMANDS = {
    "ls": _cmd_ls,
    "show": _cmd_show,
    "export": _cmd_export,
    "diff": _cmd_diff,
    "serve": _cmd_serve,
}


#: How many warnings the command printed (an empty listing that warned fails).
_WARNINGS = {"count": 0}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if not issubclass(category, DeprecationWarning | PendingDeprecationWarning):
        _WARNINGS["count"] += 1
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]
    return str(err) or type(err).__name__


def _user_errors() -> tuple[type[BaseException], ...]:
    from .._files.driver import RunChangedError
    from .._model.documents import BadDocumentError
    from .._model.filling import FillError, MissingHandlerError
    from ..export import ExportError

    return (
        CLIError,
        ExportError,
        KeyError,
        IndexError,
        ValueError,
        OSError,
        FillError,
        MissingHandlerError,
        BadDocumentError,
        RunChangedError,
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``intake-bluesky`` with ``argv``; return the exit status.

    User errors (an unknown run, bad JSON, a missing backend, a file not
    found, a server not reachable...) are one line on stderr and exit
    status 1, without a traceback; usage errors exit 2.
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    sub = _subparsers(parser).get(argv[0]) if argv else None
    if sub is not None:
        # Intermixed: RUN arguments may follow options (export ... --copy-external -1 -2).
        args = sub.parse_intermixed_args(argv[1:])
        args.command, args.version = argv[0], False
    else:
        args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(f"{PROG} {__version__}")
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    warnings.showwarning = _show_warning
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (| head): not an error; silence the final flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except _user_errors() as err:
        print(f"{PROG}: error: {_message(err)}", file=sys.stderr)
        return 1


def console_main() -> None:  # pragma: no cover - the console script
    sys.exit(main())
