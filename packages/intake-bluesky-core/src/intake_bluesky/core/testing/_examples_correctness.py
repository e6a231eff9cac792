"""Example runs that once gave wrong answers (lossless casts, tuples in
start documents, zero-row streams, integers beyond float64), and runs whose
documents are damaged in one way each.
"""

from __future__ import annotations

from typing import Any

import event_model

from ._examples import T0, _stop, _uid_factory

__all__ = [
    "CORRECTNESS_UIDS",
    "DAMAGED_UIDS",
    "correctness_runs",
    "damaged_run",
    "exact_runs",
]

CORRECTNESS_UIDS = {
    "casts": "c0000000-0000-4000-8000-000000000001",
    "tuples": "c0000000-0000-4000-8000-000000000002",
    "empty": "c0000000-0000-4000-8000-000000000003",
    "mixed": "c0000000-0000-4000-8000-000000000004",
    "exact": "c0000000-0000-4000-8000-000000000005",
    "uint64": "c0000000-0000-4000-8000-000000000006",
}

#: Runs of :func:`damaged_run`, by what is damaged.
DAMAGED_UIDS = {
    "time": "da000000-0000-4000-8000-000000000001",
    "list": "da000000-0000-4000-8000-000000000002",
    "shape": "da000000-0000-4000-8000-000000000003",
    "dtype_numpy": "da000000-0000-4000-8000-000000000004",
}


def correctness_runs() -> list[list[tuple[str, Any]]]:
    """Runs that once gave wrong answers.

    1. ``casts`` (scan_id 21): baseline ``motor1_setpoint`` declared
       ``dtype: 'integer'`` recording 0 then 2.5 (as ophyd does), ``counts``
       declared ``dtype_numpy '<i8'`` recording 1 then 2.5, and ``ok``, a
       genuine integer.
    2. ``tuples`` (22): a start document holding tuples, as a live RunEngine
       emits it (``motors``, ``hints.dimensions``).
    3. ``empty`` (23): a stream with a descriptor and no events, with a
       large image field.
    4. ``mixed`` (24): ints and floats in one field (``sp``: 0 then 2.5;
       ``n``: 2**53 + 1 then 0.5), as a device reading whatever it gets.
    """
    out: list[list[tuple[str, Any]]] = []
    uid = _uid_factory("v2-casts")
    t = T0 + 2000
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["casts"], time=t, metadata={"scan_id": 21, "plan_name": "count"}
    )
    desc = run.compose_descriptor(
        name="baseline",
        uid=uid(),
        time=t + 0.1,
        data_keys={
            "motor1_setpoint": {"source": "SIM:sp", "dtype": "integer", "shape": []},
            "counts": {"source": "SIM:c", "dtype": "number", "shape": [], "dtype_numpy": "<i8"},
            "ok": {"source": "SIM:ok", "dtype": "integer", "shape": []},
        },
    )
    docs: list[tuple[str, Any]] = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    for i, (sp, c) in enumerate(((0, 1), (2.5, 2.5))):
        docs.append(
            (
                "event",
                desc.compose_event(
                    data={"motor1_setpoint": sp, "counts": c, "ok": 7 + i},
                    timestamps={"motor1_setpoint": t, "counts": t, "ok": t},
                    seq_num=i + 1,
                    time=t + 1 + i,
                    uid=uid(),
                ),
            )
        )
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 5)))
    out.append(docs)

    uid = _uid_factory("v2-tuples")
    t = T0 + 2100
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["tuples"],
        time=t,
        metadata={
            "scan_id": 22,
            "plan_name": "scan",
            "motors": ("motor",),
            "hints": {"dimensions": [(["motor"], "primary")]},
        },
    )
    out.append([("start", run.start_doc), ("stop", run.compose_stop(uid=uid(), time=t + 1))])

    uid = _uid_factory("v2-empty")
    t = T0 + 2200
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["empty"], time=t, metadata={"scan_id": 23, "plan_name": "count"}
    )
    desc = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t + 0.1,
        data_keys={
            "image": {
                "source": "SIM:img",
                "dtype": "array",
                "shape": [1, 240, 320],
                "dtype_numpy": "|u1",
            },
            "x": {"source": "SIM:x", "dtype": "number", "shape": []},
        },
    )
    out.append(
        [
            ("start", run.start_doc),
            ("descriptor", desc.descriptor_doc),
            ("stop", _stop(run, uid(), t + 1, {"primary": 0})),
        ]
    )

    uid = _uid_factory("v2-mixed")
    t = T0 + 2300
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["mixed"], time=t, metadata={"scan_id": 24, "plan_name": "count"}
    )
    desc = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t + 0.1,
        data_keys={
            "sp": {"source": "SIM:sp", "dtype": "number", "shape": []},
            "n": {"source": "SIM:n", "dtype": "number", "shape": []},
        },
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    for i, (sp, n) in enumerate(((0, 2**53 + 1), (2.5, 0.5))):
        docs.append(
            (
                "event",
                desc.compose_event(
                    data={"sp": sp, "n": n},
                    timestamps={"sp": t, "n": t},
                    seq_num=i + 1,
                    time=t + 1 + i,
                    uid=uid(),
                ),
            )
        )
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 5)))
    out.append(docs)
    return out


def exact_runs(uint64: bool = True) -> list[list[tuple[str, Any]]]:
    """Runs whose values numpy would change if asked carelessly.

    1. ``exact`` (scan_id 25): stream ``primary`` of two descriptors, the
       second without events. Its fields: ``n`` (``'number'``, no
       ``dtype_numpy``) holding 2**60 + 1, 0.5 and 0.25, written as an
       event_page of one row and then two single events; ``s``, strings with
       NUL characters (``'a\\x00'``, ``'\\x00\\x00'``); ``a``, an ``'array'``
       of shape ``[2]`` without ``dtype_numpy`` holding integers above 2**53.
    2. ``uint64`` (26), when ``uint64`` (a format that holds unsigned 64-bit
       integers; BSON does not): ``i`` declared ``'integer'`` recording 0,
       2**63 + 1 and 7.
    """
    out: list[list[tuple[str, Any]]] = []
    uid = _uid_factory("v2-exact")
    t = T0 + 2400
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["exact"], time=t, metadata={"scan_id": 25, "plan_name": "count"}
    )
    keys = {
        "n": {"source": "SIM:n", "dtype": "number", "shape": []},
        "s": {"source": "SIM:s", "dtype": "string", "shape": []},
        "a": {"source": "SIM:a", "dtype": "array", "shape": [2]},
    }
    desc = run.compose_descriptor(name="primary", uid=uid(), time=t + 0.1, data_keys=keys)
    spare = run.compose_descriptor(name="primary", uid=uid(), time=t + 0.2, data_keys=keys)
    rows = [
        (2**60 + 1, "a\x00", [2**60 + 1, 1]),
        (0.5, "b", [2, 2**53 + 1]),
        (0.25, "\x00\x00", [-(2**62) - 1, 0]),
    ]
    docs: list[tuple[str, Any]] = [
        ("start", run.start_doc),
        ("descriptor", desc.descriptor_doc),
        ("descriptor", spare.descriptor_doc),
    ]
    n, s, a = rows[0]
    page = desc.compose_event_page(
        data={"n": [n], "s": [s], "a": [a]},
        timestamps={"n": [t], "s": [t], "a": [t]},
        seq_num=[1],
        time=[t + 1],
        uid=[uid()],
    )
    docs.append(("event_page", page))
    for i, (n, s, a) in enumerate(rows[1:], start=2):
        event = desc.compose_event(
            data={"n": n, "s": s, "a": a},
            timestamps={"n": t, "s": t, "a": t},
            seq_num=i,
            time=t + i,
            uid=uid(),
        )
        docs.append(("event", event))
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 5)))
    out.append(docs)
    if not uint64:
        return out

    uid = _uid_factory("v2-uint64")
    t = T0 + 2500
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["uint64"], time=t, metadata={"scan_id": 26, "plan_name": "count"}
    )
    desc = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t + 0.1,
        data_keys={"i": {"source": "SIM:i", "dtype": "integer", "shape": []}},
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    for k, value in enumerate((0, 2**63 + 1, 7), start=1):
        event = desc.compose_event(
            data={"i": value}, timestamps={"i": t}, seq_num=k, time=t + k, uid=uid()
        )
        docs.append(("event", event))
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 5)))
    out.append(docs)
    return out


def damaged_run(damage: str) -> list[tuple[str, Any]]:
    """A run of three events of ``x`` (a number) and ``y`` (an integer) in
    stream ``primary``, damaged as ``damage`` says (a key of
    :data:`DAMAGED_UIDS`):

    * ``"time"``: event 2 has ``time: 'yesterday'``;
    * ``"list"``: event 2 holds ``[1, 2]`` in ``x``, declared ``shape: []``;
    * ``"shape"``: the descriptor declares ``x`` with ``shape: 'abc'``;
    * ``"dtype_numpy"``: the descriptor declares ``x`` with
      ``dtype_numpy: 'garbage'``.

    Descriptor uid ``<run uid>-desc``, event uids ``<run uid>-e<seq_num>``.
    """
    uid = DAMAGED_UIDS[damage]
    t = T0 + 2600
    run = event_model.compose_run(uid=uid, time=t, metadata={"scan_id": 27, "plan_name": "count"})
    keys = {
        "x": {"source": "SIM:x", "dtype": "number", "shape": []},
        "y": {"source": "SIM:y", "dtype": "integer", "shape": []},
    }
    desc = run.compose_descriptor(name="primary", uid=f"{uid}-desc", time=t + 0.1, data_keys=keys)
    # Any: damaged documents are, on purpose, not of the schema's types.
    descriptor: Any = desc.descriptor_doc
    if damage in ("shape", "dtype_numpy"):
        # Written as a faulty program would: past event-model's validation.
        x = {
            **keys["x"],
            **({"shape": "abc"} if damage == "shape" else {"dtype_numpy": "garbage"}),
        }
        descriptor = {**descriptor, "data_keys": {**keys, "x": x}}
    docs: list[tuple[str, Any]] = [("start", run.start_doc), ("descriptor", descriptor)]
    for seq in (1, 2, 3):
        event: Any = desc.compose_event(
            data={"x": 0.5 * seq, "y": seq},
            timestamps={"x": t + seq, "y": t + seq},
            seq_num=seq,
            time=t + seq,
            uid=f"{uid}-e{seq}",
        )
        if seq == 2 and damage == "time":
            event = {**event, "time": "yesterday"}
        elif seq == 2 and damage == "list":
            event = {**event, "data": {**event["data"], "x": [1, 2]}}
        docs.append(("event", event))
    docs.append(("stop", run.compose_stop(uid=f"{uid}-stop", time=t + 5)))
    return docs
