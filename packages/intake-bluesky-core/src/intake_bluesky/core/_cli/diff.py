"""``intake-bluesky diff``: what changed between two runs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from .argtypes import tolerance
from .errors import CLIError

__all__ = ["add_parser", "run_command"]

_DESCRIPTION = """\
What differs between run A and run B: start metadata, stop metadata,
configuration per device and field, baseline readings (first and last),
streams (names, fields, shapes, dtypes, row counts), external files (found,
missing, sizes) and software versions. A and B are uids, partial uids (their
beginning), -N (the N-th most recent run) or scan_ids. Both are looked up in
STORE, or B in STORE2 with --store-b (a store of another backend; its
backend and layout are recognised, --root-map applies to both).

The exit status is 0 whether the runs differ or not (read the report or
the JSON's "equal"); 1 on errors (a run or store not found, a file that
cannot be read).
"""

_EPILOG = """\
examples:
  intake-bluesky diff data/ -2 -1
  intake-bluesky diff data/ 1b3384cd e263406e --atol 1e-6
  intake-bluesky diff data/ 41 41 --store-b mongodb://localhost/mds
  intake-bluesky diff data/ -1 -1 --store-b exported/ --json
"""


def add_parser(
    commands: Any, store_options: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """Add the ``diff`` command to the ``commands`` subparsers.

    ``store_options`` adds the options that open STORE (the other commands'
    ``--backend``, ``--root-map``, ...).
    """
    parser: argparse.ArgumentParser = commands.add_parser(
        "diff",
        help="what differs between two runs (metadata, configuration, baseline, streams, ...)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", metavar="STORE")
    parser.add_argument("run_a", metavar="A", help="uid, partial uid, -N or scan_id")
    parser.add_argument("run_b", metavar="B", help="uid, partial uid, -N or scan_id")
    store_options(parser)
    parser.add_argument(
        "--store-b",
        metavar="STORE2",
        help="look B up in STORE2 instead of STORE (e.g. a run exported elsewhere)",
    )
    parser.add_argument(
        "--rtol",
        type=tolerance,
        default=0.0,
        metavar="R",
        help="relative tolerance for floats (default: 0, exact)",
    )
    parser.add_argument(
        "--atol",
        type=tolerance,
        default=0.0,
        metavar="A",
        help="absolute tolerance for floats (default: 0, exact)",
    )
    parser.add_argument(
        "--json", action="store_true", help="the differences as one JSON object (to_dict())"
    )
    return parser


def run_command(args: argparse.Namespace, open_store: Callable[[argparse.Namespace], Any]) -> int:
    """Print the diff of the two runs; 0 whether they differ or not.

    ``open_store(args)`` opens the catalog that ``args.store`` and the store
    options name.
    """
    cat_a = open_store(args)
    if args.store_b is None:
        cat_b = cat_a
    else:
        # STORE2's backend and layout are recognised: STORE's options name
        # STORE's (a --layout of a Mongo STORE means nothing to a folder).
        others = {"backend": None, "layout": None, "assets": None, "entry": None}
        cat_b = open_store(argparse.Namespace(**{**vars(args), **others, "store": args.store_b}))
    run_a = _lookup(cat_a, args.run_a, args.store)
    run_b = _lookup(cat_b, args.run_b, args.store_b or args.store)
    diff = run_a.diff(run_b, rtol=args.rtol, atol=args.atol)
    if args.json:
        sys.stdout.write(json.dumps(diff.to_dict()) + "\n")
    else:
        sys.stdout.write(str(diff) + "\n")
    return 0


def _lookup(cat: Any, key: str, store: str) -> Any:
    try:
        return cat[key]
    except KeyError as err:
        # The catalog's message names the key; say which store, too.
        why = err.args[0] if err.args and isinstance(err.args[0], str) else repr(key)
        raise CLIError(f"{_shown(store)}: {why}") from None
    except IndexError as err:
        raise CLIError(f"{_shown(store)}: {err}") from None


def _shown(store: str) -> str:
    from .stores import uri_scheme

    scheme = uri_scheme(store)
    # A URI may hold a password: shown by its scheme only.
    return f"the {scheme} store" if scheme else store
