"""A griffe extension: the API reference shows catalog docstrings as Python does.

Catalog classes document the parameters catalogs share with marker
lines that :func:`intake_bluesky.core.with_catalog_parameters` fills at
import time; griffe reads docstrings from the source, so it fills the same
markers with the same text here. Loaded by ``mkdocs.yml``.
"""

from __future__ import annotations

from typing import Any

import griffe

from intake_bluesky.core._faces.docstrings import FRAGMENTS, fill_catalog_parameters


class CatalogParameters(griffe.Extension):
    """Fill the markers of shared parameters in class docstrings."""

    def on_class_instance(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if cls.docstring is not None and any(m in cls.docstring.value for m in FRAGMENTS):
            cls.docstring.value = fill_catalog_parameters(cls.docstring.value)
