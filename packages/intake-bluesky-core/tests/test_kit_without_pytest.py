"""The conformance kit's example runs and registries import without pytest."""

import subprocess
import sys
import textwrap


def test_example_runs_and_registries_import_without_pytest():
    # A fresh interpreter in which importing pytest fails, as where it is not
    # installed: only the test classes may need it.
    code = textwrap.dedent(
        """
        import sys
        sys.modules["pytest"] = None
        from intake_bluesky.core.testing import (
            RunStore, correctness_runs, example_registry, example_runs, normalize_documents,
            plain, stream_registry, stream_runs,
        )
        runs = example_runs()
        print(len(runs), [name for name, _ in runs[1]])
        print(sorted(example_registry("/tmp/x")))
        print(normalize_documents(runs[1])["start"]["uid"] == runs[1][0][1]["uid"])
        try:
            from intake_bluesky.core.testing import ConformanceTests
        except ImportError as error:
            print("ConformanceTests:", type(error).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "5 ['start', 'descriptor', 'event_page', 'stop']",
        "['handler_registry', 'root_map']",
        "True",
        "ConformanceTests: ModuleNotFoundError",
    ]
