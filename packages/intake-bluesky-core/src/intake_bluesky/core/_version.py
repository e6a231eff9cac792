"""The package version, read once from the installed distribution's metadata."""

import importlib.metadata

__version__ = importlib.metadata.version("intake-bluesky-core")
