"""The ``intake-bluesky`` command line: list, show and export runs of any store.

Examples
--------
>>> from intake_bluesky.core._cli import main
>>> main(["--version"])  # doctest: +ELLIPSIS
intake-bluesky ...
0
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
