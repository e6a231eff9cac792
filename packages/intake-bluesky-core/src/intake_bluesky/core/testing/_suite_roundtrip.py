"""A property-based round trip: random runs written through a backend's store
and read back with ``read()``, ``to_dask()`` and ``canonical(fill='no')``,
compared exactly. A mixin of :class:`ConformanceTests`.

Hypothesis draws runs of one or two streams whose fields hold every kind of
value (floats with NaN, +-inf and -0.0; integers beyond 2**53 and in the
uint64 range; booleans; strings with astral characters and trailing NULs;
integer and float arrays of a declared shape), written as single events,
event pages or a mix, with extra descriptors that have no events. Nothing may
change on the way: values (NaN at the same places, the sign of zero, every
integer digit, every character), dtypes (the declared ``dtype_numpy`` or
``dtype``, else the values' own; a declaration the values do not fit keeps
their own dtype), the order of rows and documents.

Hypothesis is imported when these tests run, not when the kit is imported.

Profiles
--------
``INTAKE_BLUESKY_HYPOTHESIS_PROFILE`` picks how many runs each backend gets:

* ``default`` (unset): a fixed, derandomized set of :data:`DEFAULT_EXAMPLES`
  runs, a few seconds per backend;
* ``thorough``: :data:`THOROUGH_EXAMPLES` random runs (``nox -s
  roundtrip_thorough``);
* any other name: a Hypothesis profile registered under that name.

What a store may declare
------------------------
A :class:`RunStore` may tell the round trip what its format keeps:

``integer_range``
    ``(low, high)``: the integers the format holds (default
    ``(-2**63, 2**64 - 1)``, numpy's int64 and uint64; BSON holds int64 only).
``as_stored(documents)``
    The documents as the store keeps them (e.g. suitcase-msgpack writes every
    event as a 1-row event_page), which ``canonical(fill='no')`` must yield
    document for document; ``None`` when the layout regroups events into
    pages of its own (Mongo embedded; ``keeps_event_form = False``), so that
    only the unpacked events are compared, in order. Default: the documents
    as written.

The other tests of the kit read the same capability attributes (see
:class:`RunStore`).
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import event_model
import numpy as np

from .._model.pages import unpack_datum_page, unpack_event_page
from ..errors import DtypeMismatchError
from ._examples import T0

__all__ = [
    "DEFAULT_EXAMPLES",
    "KNOWN_RUNS",
    "PROFILE_ENV",
    "THOROUGH_EXAMPLES",
    "RoundTripTests",
    "compose_plan",
    "run_plans",
]

#: Environment variable naming the Hypothesis profile of the round trip.
PROFILE_ENV = "INTAKE_BLUESKY_HYPOTHESIS_PROFILE"
#: Runs per backend in the default profile (derandomized: the same runs each time).
DEFAULT_EXAMPLES = 30
#: Runs per backend in the ``thorough`` profile.
THOROUGH_EXAMPLES = 1000

_INT64 = (-(2**63), 2**63 - 1)
_DEFAULT_RANGE = (-(2**63), 2**64 - 1)
_JSON_DECLARED = {"integer": np.dtype("int64"), "boolean": np.dtype("bool")}


def _settings():
    """The Hypothesis settings the environment variable selects."""
    from hypothesis import HealthCheck, settings

    name = os.environ.get(PROFILE_ENV, "default") or "default"
    common = dict(
        deadline=None,
        # Failures print the run that broke; no example database is written
        # into the working directory.
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    if name == "default":
        return settings(max_examples=DEFAULT_EXAMPLES, derandomize=True, **common)
    if name == "thorough":
        return settings(max_examples=THOROUGH_EXAMPLES, **common)
    try:
        return settings.get_profile(name)
    except Exception:  # InvalidArgument: not registered
        raise ValueError(
            f"{PROFILE_ENV}={name!r} names no Hypothesis profile: use 'default', "
            "'thorough', or register a profile of that name (hypothesis.settings."
            "register_profile) before the tests run."
        ) from None


# --- what a run is made of ----------------------------------------------------


@dataclass(frozen=True)
class FieldPlan:
    """One data key: its kind of value and its descriptor entry."""

    kind: str  # float | int | uint | bool | str | number | int_array | float_array
    data_key: dict

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data_key["shape"])


@dataclass(frozen=True)
class RunPlan:
    """A run to write, in plain data (Hypothesis prints it when a run breaks).

    ``timeline`` lists, in time order, ``("descriptor", stream, i)`` (the
    stream's descriptor ``i``; descriptor 0 holds the events) and
    ``("event", stream, {field: value})``; ``pages`` says, per event, whether
    it starts a new piece and whether its piece is written as an event_page.
    """

    metadata: dict
    streams: dict  # stream name -> {field name: FieldPlan}
    timeline: tuple
    pages: tuple  # per event: (starts a new piece, as event_page)
    stop: bool


def run_plans(integer_range: tuple[int, int] = _DEFAULT_RANGE, max_events: int = 8):
    """A Hypothesis strategy of :class:`RunPlan`\\ s.

    Parameters
    ----------
    integer_range : (int, int)
        The integers the store holds.
    max_events : int
        The most events of a run (all streams together).
    """
    from hypothesis import strategies as st

    low, high = integer_range

    def ints(lo, hi):
        lo, hi = max(lo, low), min(hi, high)
        special = (lo, hi, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63 + 1)
        edges = [v for v in special if lo <= v <= hi]
        return st.one_of(
            st.integers(max(lo, -3), min(hi, 3)),
            st.integers(max(lo, 2**53 - 2), min(hi, 2**53 + 3)),
            st.sampled_from(edges),
            st.integers(lo, hi),
        )

    floats = st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 0.1, 5e-324]),
        st.floats(allow_nan=True, allow_infinity=True),
    )
    # Strings end in NUL characters often: numpy's "<U" would strip them.
    text = st.tuples(
        st.text(
            st.one_of(st.characters(), st.sampled_from(["\x00", "\U0001f600", "é", "\u200b"])),
            max_size=5,
        ),
        st.sampled_from(["", "", "\x00", "\x00\x00"]),
    ).map("".join)
    values_of = {
        "float": floats,
        "int": ints(*_INT64),
        "uint": ints(0, 2**64 - 1),
        "bool": st.booleans(),
        "str": text,
        "number": st.one_of(floats, ints(*_INT64)),
    }
    kinds = list(values_of) + ["int_array", "float_array"]

    @st.composite
    def field(draw):
        kind = draw(st.sampled_from(kinds))
        shape: list[int] = []
        if kind.endswith("_array"):
            shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
            json_dtype = "array"
        else:
            json_dtype = {
                "float": "number",
                "int": draw(st.sampled_from(["integer", "number"])),
                "uint": "integer",
                "bool": "boolean",
                "str": "string",
                "number": "number",
            }[kind]
        numpy = {
            "float": "<f8",
            "float_array": "<f8",
            "int": "<i8",
            "int_array": "<i8",
            "uint": "<u8",
            "bool": "|b1",
        }.get(kind)
        data_key = {"source": f"sim:{kind}", "dtype": json_dtype, "shape": shape}
        if numpy and draw(st.booleans()):
            data_key["dtype_numpy"] = numpy
        return FieldPlan(kind, data_key)

    def value(plan: FieldPlan):
        if plan.kind == "int_array":
            element = ints(*_INT64)
        elif plan.kind == "float_array":
            element = floats
        else:
            return values_of[plan.kind]
        size = math.prod(plan.shape)
        return st.lists(element, min_size=size, max_size=size).map(
            lambda flat: _nest(flat, plan.shape)
        )

    @st.composite
    def plans(draw):
        names = draw(st.sampled_from([["primary"], ["primary", "baseline"]]))
        streams = {
            name: {
                f"{name[0]}{i}": f
                for i, f in enumerate(draw(st.lists(field(), min_size=1, max_size=4)))
            }
            for name in names
        }
        # Events (by stream) and extra descriptors without events, in time order.
        tokens = draw(st.lists(st.sampled_from(names), max_size=max_events))
        timeline: list = []
        for name in tokens:
            data = {key: draw(value(f)) for key, f in streams[name].items()}
            timeline.append(("event", name, data))
        for name in names:
            for i in range(1, draw(st.integers(0, 2)) + 1):
                at = draw(st.integers(0, len(timeline)))
                timeline.insert(at, ("descriptor", name, i))
        for name in names:
            # The descriptor of the events comes before them (anywhere when
            # the stream has no events).
            events = [i for i, t in enumerate(timeline) if t[0] == "event" and t[1] == name]
            at = draw(st.integers(0, events[0] if events else len(timeline)))
            timeline.insert(at, ("descriptor", name, 0))
        n_events = sum(1 for t in timeline if t[0] == "event")
        pages = tuple(draw(st.tuples(st.booleans(), st.booleans())) for _ in range(n_events))
        metadata = {"note": draw(text), "count": draw(ints(*_INT64)), "ratio": draw(floats)}
        return RunPlan(metadata, streams, tuple(timeline), pages, draw(st.booleans()))

    return plans()


def _nest(flat: list, shape) -> list:
    """A flat list as nested lists of ``shape``."""
    for size in reversed(shape[1:]):
        flat = [flat[i : i + size] for i in range(0, len(flat), size)]
    return flat


def compose_plan(plan: RunPlan) -> list[tuple[str, dict]]:
    """The documents of a :class:`RunPlan`, composed with event-model.

    Consecutive events of one stream (nothing else between them) form
    pieces; each piece is written as one event_page or as single events.
    """
    run = event_model.compose_run(time=T0, metadata=dict(plan.metadata))
    docs: list[tuple[str, Any]] = [("start", run.start_doc)]
    bundles: dict[tuple[str, int], object] = {}
    seq = dict.fromkeys(plan.streams, 0)
    step = itertools.count(1)
    pending: list = []  # events of the current piece
    page_flags = iter(plan.pages)

    def flush():
        if not pending:
            return
        bundle, events, as_page = pending[0][0], [e for _, e, _ in pending], pending[0][2]
        if as_page:
            keys = list(events[0]["data"])
            docs.append(
                (
                    "event_page",
                    bundle.compose_event_page(
                        data={k: [e["data"][k] for e in events] for k in keys},
                        timestamps={k: [e["time"] for e in events] for k in keys},
                        seq_num=[e["seq_num"] for e in events],
                        time=[e["time"] for e in events],
                        filled={},
                    ),
                )
            )
        else:
            for e in events:
                docs.append(
                    (
                        "event",
                        bundle.compose_event(
                            data=e["data"],
                            timestamps=dict.fromkeys(e["data"], e["time"]),
                            seq_num=e["seq_num"],
                            time=e["time"],
                        ),
                    )
                )
        pending.clear()

    last_stream = None
    for kind, stream, detail in plan.timeline:
        time = T0 + next(step) * 0.25
        if kind == "descriptor":
            flush()
            last_stream = None
            data_keys = {k: dict(f.data_key) for k, f in plan.streams[stream].items()}
            bundle = run.compose_descriptor(name=stream, data_keys=data_keys, time=time)
            bundles[(stream, detail)] = bundle
            docs.append(("descriptor", bundle.descriptor_doc))
            continue
        new_piece, as_page = next(page_flags)
        if stream != last_stream or new_piece:
            flush()
        last_stream = stream
        seq[stream] += 1
        event = {"data": detail, "seq_num": seq[stream], "time": time}
        pending.append((bundles[(stream, 0)], event, as_page if not pending else pending[0][2]))
    flush()
    if plan.stop:
        docs.append(("stop", run.compose_stop(time=T0 + next(step) * 0.25)))
    return docs


def _one_field_run(kind, data_key, values, pages, empty_descriptor=False) -> RunPlan:
    timeline: list[tuple[str, str, Any]] = [("descriptor", "primary", 0)]
    timeline += [("event", "primary", {"p0": v}) for v in values]
    if empty_descriptor:
        timeline.append(("descriptor", "primary", 1))
    field = FieldPlan(kind, {"source": f"sim:{kind}", **data_key})
    return RunPlan({}, {"primary": {"p0": field}}, tuple(timeline), tuple(pages), True)


_SINGLE, _PAGE, _NEW_PAGE = (False, False), (False, True), (True, True)

#: Runs that once changed values or documents: every profile tries them first.
KNOWN_RUNS = (
    # Integers above 2**53: a single event, then a 1-row event_page.
    _one_field_run("int", {"dtype": "integer", "shape": []}, [2**53 + 1, 0], [_SINGLE, _NEW_PAGE]),
    # An integer array without dtype_numpy, and a descriptor with no events.
    _one_field_run(
        "int_array",
        {"dtype": "array", "shape": [2]},
        [[2**53 + 1, 0], [1, 2]],
        [_SINGLE, _SINGLE],
        empty_descriptor=True,
    ),
    # Beyond int64, declared 'integer'.
    _one_field_run("uint", {"dtype": "integer", "shape": []}, [0, 2**63 + 1], [_SINGLE, _SINGLE]),
    # Trailing NUL characters.
    _one_field_run("str", {"dtype": "string", "shape": []}, ["a\x00", "\x00"], [_PAGE, _PAGE]),
    # Integral floats (-0.0 too) among integers too big for float64.
    _one_field_run(
        "number", {"dtype": "number", "shape": []}, [-0.0, 2**63 - 1], [_SINGLE, _SINGLE]
    ),
    _one_field_run("number", {"dtype": "number", "shape": []}, [1.0, 2**53 + 1], [_SINGLE, _PAGE]),
    # A 'number' field whose first value is an int (to_dask() must not fix
    # int64 from it).
    _one_field_run("number", {"dtype": "number", "shape": []}, [1, 0.5], [_SINGLE, _SINGLE]),
)


def _ints_within(value, low: int, high: int) -> bool:
    if isinstance(value, dict):
        return all(_ints_within(v, low, high) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_ints_within(v, low, high) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return low <= value <= high
    return True


# --- exact comparison -----------------------------------------------------------


def _plain(value):
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):  # (bson.Int64 too)
        return "int"
    return type(value).__name__


def differences(actual, expected, where: str = "", numbers: bool = False) -> list[str]:
    """Where two plain values differ: types (bool, int, float, str), every
    digit of an integer, NaN, the sign of zero, every character.

    ``numbers``: an int and a float of the same value are the same (a column
    of one dtype holds both), the sign of zero and every digit still count.
    """
    out: list[str] = []
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(actual) | set(expected), key=str):
            if key not in actual:
                out.append(f"{where}.{key}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{where}.{key}: unexpected {actual[key]!r}")
            else:
                out.extend(differences(actual[key], expected[key], f"{where}.{key}", numbers))
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(actual) != len(expected):
            return [f"{where}: {len(actual)} items, expected {len(expected)}"]
        for i, (a, e) in enumerate(zip(actual, expected)):
            out.extend(differences(a, e, f"{where}[{i}]", numbers))
        return out
    kinds = {_kind(actual), _kind(expected)}
    if numbers and kinds <= {"int", "float"}:
        pass
    elif _kind(actual) != _kind(expected):
        what = f"{actual!r} ({_kind(actual)}), expected {expected!r} ({_kind(expected)})"
        return [f"{where}: {what}"]
    if "float" in kinds:
        same = (math.isnan(actual) and math.isnan(expected)) or (
            actual == expected and math.copysign(1, actual) == math.copysign(1, expected)
        )
    else:
        same = actual == expected
    return [] if same else [f"{where}: {actual!r}, expected {expected!r}"]


def _normal_event(doc: Any) -> dict:
    doc = _plain(doc)
    # Storage may drop an empty 'filled' or store False for unfilled keys.
    doc["filled"] = {k: v for k, v in (doc.get("filled") or {}).items() if v}
    return doc


def _normal(name: str, doc: dict) -> dict:
    doc = _plain(doc)
    if name == "event_page":
        filled = doc.get("filled") or {}
        doc["filled"] = {k: v for k, v in filled.items() if any(v)}
    elif name == "event":
        doc = _normal_event(doc)
    return doc


def _unpacked(documents) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, doc in documents:
        if name == "event_page":
            out.extend(("event", _normal_event(e)) for e in unpack_event_page(_plain(doc)))
        elif name == "datum_page":
            out.extend(("datum", d) for d in unpack_datum_page(_plain(doc)))
        else:
            out.append((name, _normal(name, doc)))
    return out


# --- what read() must give -------------------------------------------------------


def _declared(data_key: dict) -> np.dtype | None:
    if data_key.get("dtype_numpy"):
        return np.dtype(data_key["dtype_numpy"])
    return _JSON_DECLARED.get(data_key.get("dtype", ""))


def _own_dtype(flat: list) -> np.dtype:
    """The dtype that holds every value unchanged (DESIGN: the values' own)."""
    kinds = set(map(_kind, flat))
    if kinds == {"bool"}:
        return np.dtype(bool)
    if kinds == {"str"}:
        return np.dtype(object)  # checked by kind (U or O), see _check_variable
    if kinds == {"int"}:
        if all(_INT64[0] <= v <= _INT64[1] for v in flat):
            return np.dtype("int64")
        return np.dtype("uint64") if min(flat) >= 0 else np.dtype(object)
    if kinds <= {"int", "float"}:
        exact = all(v == float(v) for v in flat if isinstance(v, int))
        return np.dtype("float64") if exact else np.dtype(object)
    return np.dtype(object)


def _fits(flat: list, dtype: np.dtype) -> bool:
    kinds = set(map(_kind, flat))
    if dtype.kind == "b":
        return kinds <= {"bool"}
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return kinds <= {"int"} and all(info.min <= v <= info.max for v in flat)
    if dtype.kind == "f":
        return kinds <= {"float"} or (
            kinds <= {"int", "float"} and all(v == float(v) for v in flat if _kind(v) == "int")
        )
    return False


@dataclass
class Expected:
    """One field of a stream as ``read()`` must return it."""

    values: list  # per row, plain
    shape: tuple[int, ...]
    dtype: np.dtype | None  # None: not checked (no rows and nothing declared, or mixed)
    #: The declared dtype the values do not fit: to_dask() may refuse them.
    refused: bool


def _flat(values: list, shape) -> list:
    for _ in shape:
        values = [x for row in values for x in row]
    return values


def expected_fields(plan: RunPlan, stream: str) -> dict[str, Expected]:
    rows = [t[2] for t in plan.timeline if t[0] == "event" and t[1] == stream]
    out = {}
    for key, f in plan.streams[stream].items():
        values = [r[key] for r in rows]
        flat = _flat(values, f.shape)
        declared = _declared(f.data_key)
        if not values:
            out[key] = Expected([], f.shape, declared, False)
            continue
        own: np.dtype | None = _own_dtype(flat)
        if {"int", "float"} <= set(map(_kind, flat)):
            # Ints among floats: no one dtype is theirs (float64 rounds big
            # ints; an integer dtype holds integral floats by value). Their
            # values are compared, the sign of zero and NaN included.
            own = None
        if declared is not None and _fits(flat, declared):
            out[key] = Expected(values, f.shape, declared, False)
        else:
            out[key] = Expected(values, f.shape, own, declared is not None)
    return out


def _check_variable(ds, key: str, exp: Expected, face: str) -> list[str]:
    var = ds[key]
    where = f"{face}: field {key!r}"
    out = []
    if var.shape != (len(exp.values), *exp.shape):
        return [f"{where}: shape {var.shape}, expected {(len(exp.values), *exp.shape)}"]
    if exp.dtype is not None:
        if exp.dtype == object and set(map(_kind, _flat(exp.values, exp.shape))) == {"str"}:
            if var.dtype.kind not in "UO":
                out.append(f"{where}: dtype {var.dtype}, expected strings (U or O)")
        elif var.dtype != exp.dtype:
            out.append(f"{where}: dtype {var.dtype}, expected {exp.dtype}")
    out.extend(differences(_plain(var.values), exp.values, where, numbers=True))
    return out


# --- the test --------------------------------------------------------------------


class RoundTripTests:
    """Random runs written through the store read back unchanged.

    See the module docstring for the profiles and what a store may declare.
    """

    def test_random_runs_round_trip_exactly(self, store):
        from hypothesis import example, given

        integer_range = getattr(store, "integer_range", _DEFAULT_RANGE)

        def round_trip(plan):
            documents = compose_plan(plan)
            uid = documents[0][1]["uid"]
            store.write_run(documents)
            try:
                problems = check_run(store, plan, documents)
            finally:
                # Each run is removed after its check: the store stays small.
                store.delete_run(uid)
            assert not problems, "\n".join(problems)

        test = given(plan=run_plans(integer_range))(round_trip)
        for plan in KNOWN_RUNS:
            if _ints_within(plan.timeline, *integer_range):
                test = example(plan=plan)(test)
        _settings()(test)()


def check_run(store, plan: RunPlan, documents: list) -> list[str]:
    """Every way the run read back differs from what was written."""
    uid = documents[0][1]["uid"]
    run = store.catalog()[uid]
    problems: list[str] = []
    for stream in plan.streams:
        expected = expected_fields(plan, stream)
        # Item i of the timeline was written at T0 + (i + 1) * 0.25.
        times = [
            T0 + (i + 1) * 0.25
            for i, t in enumerate(plan.timeline)
            if t[0] == "event" and t[1] == stream
        ]
        with warnings.catch_warnings():
            # A declared dtype the values do not fit warns (and keeps them).
            warnings.simplefilter("ignore")
            ds = run[stream].read()
        problems += differences(_plain(ds["time"].values), times, f"{stream} read(): time")
        problems += differences(
            _plain(ds["seq_num"].values), list(range(1, len(times) + 1)), f"{stream} seq_num"
        )
        for key, exp in expected.items():
            problems += _check_variable(ds, key, exp, f"{stream} read()")
        lazy = run[stream].to_dask()
        for key, exp in expected.items():
            try:
                computed = lazy[[key]].compute()
            except DtypeMismatchError as err:
                if exp.refused and key in str(err):
                    # Documented: to_dask() fixes the declared dtype before
                    # reading, and refuses values that do not fit it rather
                    # than change them.
                    continue
                problems.append(f"{stream} to_dask(): field {key!r} raised {err!r}")
                continue
            except Exception as err:
                problems.append(f"{stream} to_dask(): field {key!r} raised {err!r}")
                continue
            problems += _check_variable(computed, key, exp, f"{stream} to_dask()")
    got = list(run.canonical(fill="no"))
    problems += _check_documents(store, got, documents)
    return problems


def _descriptors_apart(documents: list) -> tuple[list, list]:
    """The descriptors, and the other documents, each in their order.

    Where a descriptor stands among the events of other descriptors is not
    part of what a store keeps (Mongo stores them in separate collections);
    what is kept is their own order and that each comes before its events.
    """
    descriptors = [(n, d) for n, d in documents if n == "descriptor"]
    return descriptors, [(n, d) for n, d in documents if n != "descriptor"]


def _descriptor_first(got: list) -> list[str]:
    seen, out = set(), []
    for name, doc in got:
        if name == "descriptor":
            seen.add(doc["uid"])
        elif name in ("event", "event_page") and doc["descriptor"] not in seen:
            out.append(f"canonical(): an {name} of descriptor {doc['descriptor']!r} before it")
    return out


def _same_sequence(got: list, want: list, what: str) -> list[str]:
    out = []
    for part, (a, e) in zip(
        ("descriptors", "documents"), zip(*map(_descriptors_apart, (got, want)))
    ):
        names, want_names = [n for n, _ in a], [n for n, _ in e]
        if names != want_names:
            out.append(f"canonical() {what}: {part} {names}, expected {want_names}")
            continue
        for i, ((name, doc), (_, wanted)) in enumerate(zip(a, e)):
            out += differences(doc, wanted, f"canonical() {what} {part}[{i}] {name}")
    return out


def _check_documents(store, got: list, documents: list) -> list[str]:
    out = _descriptor_first(got)
    # Events unpacked from pages: values, types and order.
    out += _same_sequence(_unpacked(got), _unpacked(documents), "unpacked")
    as_stored = getattr(store, "as_stored", None)
    stored = as_stored(documents) if as_stored is not None else documents
    if stored is None or out:
        return out
    # Each document in its stored form: an event stays an event, a page a page.
    normal = [(n, _normal(n, d)) for n, d in got]
    return _same_sequence(normal, [(n, _normal(n, d)) for n, d in stored], "as stored")
