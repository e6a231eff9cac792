"""``intake-bluesky serve``: a store's runs through tiled, read-only.

The serving code lives in intake-bluesky-tiled (its ``server`` extra); this
command finds it through the backend registered as ``tiled`` and never
imports tiled before it is asked to serve, so the core works without it.

Examples
--------
Where clients reach a server bound to an address:

>>> _url("127.0.0.1", 8000), _url("0.0.0.0", 8000), _url("fe80::1", 9000)
('http://localhost:8000', 'http://0.0.0.0:8000', 'http://[fe80::1]:9000')
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from importlib import import_module
from typing import Any

from .._registry import BACKEND_GROUP, checkout_hint, entry_point_objects, provider
from .argtypes import port, positive
from .errors import CLIError

__all__ = ["add_parser", "app_from_environment", "run_command", "server_build_app"]

#: The environment variable through which each uvicorn worker process gets
#: the store to serve (workers import the app factory by name).
ENV = "INTAKE_BLUESKY_SERVE"
#: tiled's own variable for the single-user api key.
KEY_ENV = "TILED_SINGLE_USER_API_KEY"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

_DESCRIPTION = """\
Serve the runs of STORE through tiled, read-only, for tiled's clients
(Python, JavaScript, the browser) and bluesky-tiled-plugins' client classes:
from_uri("http://HOST:PORT", api_key=KEY)[uid]["primary"].read(),
run.documents(), client[-1], client[scan_id], searches. Nothing is copied
or migrated: each request reads STORE.

Bound to localhost (the default), anyone on this machine may read without a
key, unless a key is given (--api-key or TILED_SINGLE_USER_API_KEY). Bound
to another address, a key is required: --api-key, or the
TILED_SINGLE_USER_API_KEY environment variable, or else one is generated and
printed; --public lets anyone read instead.
Needs intake-bluesky-tiled with its server extra.
"""

_EPILOG = """\
examples:
  intake-bluesky serve data/
  intake-bluesky serve data/ --host 0.0.0.0 --port 8000 --workers 4
  TILED_SINGLE_USER_API_KEY=secret intake-bluesky serve mongodb://localhost/mds --host 0.0.0.0
  intake-bluesky serve catalog.yml --entry beamline --host 0.0.0.0 --public

then, on another machine (Python):
  from tiled.client import from_uri
  client = from_uri("http://HOST:8000", api_key="KEY")
  client[-1]["primary"].read()
"""


def add_parser(
    commands: Any, store_options: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """Add the ``serve`` command to the ``commands`` subparsers
    (``store_options`` adds the options that open STORE)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="serve the runs of a store through tiled (read-only)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", metavar="STORE")
    store_options(parser)
    group = parser.add_argument_group("server")
    group.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    group.add_argument("--port", type=port, default=8000, help="port (default: %(default)s)")
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the key clients must give (letters and digits; default: ${KEY_ENV}, else "
        "generated when not bound to localhost)",
    )
    group.add_argument("--public", action="store_true", help="anyone may read, without a key")
    group.add_argument(
        "--workers",
        type=positive,
        default=1,
        metavar="N",
        help="uvicorn worker processes sharing the store (default: %(default)s)",
    )
    return parser


def server_build_app() -> Callable[..., Any]:
    """``build_app`` of the installed tiled backend, or a ``CLIError`` that
    says what to install."""
    package = provider(BACKEND_GROUP, "tiled") or "intake-bluesky-tiled"
    install = f"pip install '{package}[server]' (or, {checkout_hint(package)}[server])"
    found = entry_point_objects(BACKEND_GROUP).get("tiled")
    if found is None:
        raise CLIError(f"Serving needs the tiled backend, which is not installed: {install}")
    try:
        module = import_module(found.module)
        build_app = module.build_app
        import uvicorn  # noqa: F401  (the server runs the app)
    except ImportError as err:
        raise CLIError(f"Serving needs the server extra of {package} ({err}): {install}") from None
    return build_app


def _settings(args) -> dict[str, Any]:
    """What a worker needs to open the store and build the app."""
    key = args.api_key or os.environ.get(KEY_ENV) or None
    local = args.host in _LOCAL_HOSTS
    public = bool(args.public) or (local and key is None)
    if key is None and not public:
        import secrets

        key = secrets.token_hex(32)
    if key is not None and not (key.isascii() and key.isalnum()):
        raise CLIError("--api-key must be letters and digits only.")
    return {
        "store": args.store,
        "backend": args.backend,
        "layout": args.layout,
        "assets": args.assets,
        "entry": args.entry,
        "root_map": list(args.root_map),
        "api_key": key,
        "public": public,
        "scalable": args.workers > 1,
    }


def _app(settings: dict[str, Any], open_store: Callable[..., Any]):
    from .main import _root_map

    catalog = open_store(
        settings["store"],
        backend=settings["backend"],
        layout=settings["layout"],
        assets=settings["assets"],
        entry=settings["entry"],
        root_map=_root_map(settings["root_map"]),
    )
    app = server_build_app()(
        catalog,
        api_key=settings["api_key"],
        public=settings["public"],
        scalable=settings["scalable"],
    )
    return catalog, app


def app_from_environment():
    """The app of one uvicorn worker, from the settings the command put in
    the environment (uvicorn starts workers by importing this factory)."""
    from .stores import open_store

    return _app(json.loads(os.environ[ENV]), open_store)[1]


def _url(host: str, port: int) -> str:
    shown = "localhost" if host in _LOCAL_HOSTS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def run_command(args) -> int:
    """Serve until interrupted."""
    from .stores import open_store

    settings = _settings(args)
    # Open it here first: a wrong store is an error now, not in each worker.
    catalog, app = _app(settings, open_store)
    url = _url(args.host, args.port)
    key = settings["api_key"]
    print(f"Serving {len(catalog)} runs of {args.store} at {url} (read-only)", flush=True)
    if key is not None:
        print(f"API key: {key}", flush=True)
    print(
        "Read it: from tiled.client import from_uri; "
        f"client = from_uri({url!r}{f', api_key={key!r}' if key else ''})",
        flush=True,
    )
    import uvicorn

    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    os.environ[ENV] = json.dumps(settings)
    if key is not None:
        os.environ[KEY_ENV] = key
    uvicorn.run(
        f"{__name__}:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )
    return 0
