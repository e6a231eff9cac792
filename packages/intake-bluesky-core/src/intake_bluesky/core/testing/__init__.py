"""The conformance kit: example runs and backend-neutral tests.

A backend subclasses :class:`ConformanceTests` with a ``store`` fixture that
returns a :class:`RunStore` writing documents in its format; the kit feeds it
:func:`example_runs` and asserts values, dtypes and ordering.

Examples
--------
>>> from intake_bluesky.core.testing import example_runs
>>> [name for name, _ in example_runs()[1]]
['start', 'descriptor', 'event_page', 'stop']

The example runs, registries and :class:`RunStore` need only the core's own
dependencies; :class:`ConformanceTests` needs pytest and is imported on first
use, so ``example_runs()`` works where pytest is not installed.
"""

from ._compare import RunStore, Unrepresentable, normalize_documents, plain
from ._examples import (
    EXTERNAL_ROOT,
    NPY_STACK_MIMETYPE,
    UIDS,
    NpyStackReader,
    NumpySeqHandler,
    example_registry,
    example_runs,
    mixed_forms_run,
)
from ._examples_correctness import CORRECTNESS_UIDS, correctness_runs
from ._examples_streams import (
    NPZ_MIMETYPE,
    STREAM_UIDS,
    NpzFramesReader,
    stream_registry,
    stream_runs,
)

__all__ = [
    "CORRECTNESS_UIDS",
    "EXTERNAL_ROOT",
    "NPY_STACK_MIMETYPE",
    "NPZ_MIMETYPE",
    "STREAM_UIDS",
    "UIDS",
    "ConformanceTests",
    "NpyStackReader",
    "NpzFramesReader",
    "NumpySeqHandler",
    "RunStore",
    "Unrepresentable",
    "correctness_runs",
    "example_registry",
    "example_runs",
    "mixed_forms_run",
    "normalize_documents",
    "plain",
    "stream_registry",
    "stream_runs",
]


def __getattr__(name: str):
    # The test classes import pytest: loaded only when asked for.
    if name == "ConformanceTests":
        from ._suite import ConformanceTests

        return ConformanceTests
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
