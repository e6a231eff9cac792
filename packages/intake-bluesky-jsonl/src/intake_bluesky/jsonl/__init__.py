"""Bluesky runs saved as JSONL files, as intake catalogs.

Reads what suitcase-jsonl writes: one ``<start uid>.jsonl`` file per run,
one ``[name, document]`` JSON array per line.

Examples
--------
Write a small run the way suitcase-jsonl does and read it back:

>>> import json, os, tempfile
>>> from event_model import compose_run
>>> directory = tempfile.mkdtemp()
>>> bundle = compose_run(metadata={"plan_name": "count", "scan_id": 1})
>>> desc = bundle.compose_descriptor(
...     name="primary",
...     data_keys={"det": {"source": "sim", "dtype": "number", "shape": []}},
... )
>>> docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
>>> docs += [
...     ("event", desc.compose_event(data={"det": v}, timestamps={"det": 0.0}))
...     for v in (1.5, 2.5)
... ]
>>> docs.append(("stop", bundle.compose_stop()))
>>> path = os.path.join(directory, bundle.start_doc["uid"] + ".jsonl")
>>> with open(path, "w") as f:
...     for name, doc in docs:
...         _ = f.write(json.dumps([name, doc]) + "\\n")
>>> cat = BlueskyJSONLCatalog(directory)
>>> run = cat[1]
>>> run.primary.read()["det"].values.tolist()
[1.5, 2.5]
"""

from ._catalog import BlueskyJSONLCatalog
from ._format import JSONLFormat
from ._writer import JSONLWriter

__all__ = ["BlueskyJSONLCatalog", "JSONLFormat", "JSONLWriter"]
