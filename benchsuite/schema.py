"""The schema of a campaign: what a campaign file may hold, and what any Campaign may be.

Validated by pydantic in strict mode: no booleans for numbers, no floats for integers (integers
are fine where a float is expected), no strings for numbers, no NaN or infinity, no unknown keys,
and every number within its range. The same schema checks a campaign file
(:func:`benchsuite.campaign.campaign_from_dict`), a :class:`~benchsuite.campaign.Campaign`
built in Python, and one built from command-line options, so that nothing out of range reaches
a run.

:func:`validate_campaign` raises :class:`SchemaError`, whose message has one short line per bad
entry: where it is, what is allowed, and what was given.
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from benchsuite.backends import BACKENDS
from benchsuite.harness import MAX_EXTEND, Budget, Recording

MAX_NAME_LENGTH = 10_000  # a grid of about a thousand values
MAX_N_POINTS = 10**7
MAX_SEED = 2**63 - 1
MAX_T_MAX = 1e9
MAX_MAX_STEPS = 10**9
MAX_MAX_EVALS = 10**12
MAX_WALL_TIME = 604_800.0  # a week
MAX_PER_OCTAVE = 64
T_MIN_RANGE = (1e-12, 1e3)
#: Trajectories per shard, the unit of work, of resume and of files (see
#: :mod:`benchsuite.tasks`): large enough that numpy's per-call overhead is amortized (a step
#: costs the same per row from about 10^4 rows on), small enough that 10^6 trajectories make
#: 20 pieces to spread over workers and to resume from, in well under a GB each.
DEFAULT_SHARD_SIZE = 50_000
#: At most this many bad entries are listed in one message.
MAX_LINES = 10


class SchemaError(ValueError):
    """A campaign that breaks the schema; ``lines`` says what is wrong, one entry per line."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        shown = lines[:MAX_LINES]
        if len(lines) > MAX_LINES:
            shown.append(f"... and {len(lines) - MAX_LINES} more")
        text = lines[0] if len(lines) == 1 else (
            f"{len(lines)} invalid entries:\n" + "\n".join(f"  {line}" for line in shown))
        super().__init__(text)


def _fmt(x: float) -> str:
    """A bound as people write it: 10^7, 2^63 - 1, 1e9, 1e-12, 604800."""
    if isinstance(x, int):
        if x == 2**63 - 1:
            return "2^63 - 1"
        if x >= 10_000 and str(x).rstrip("0") == "1":
            return f"10^{len(str(x)) - 1}"
        return str(x)
    text = f"{x:g}"
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else text


def _plain(value: Any) -> Any:
    """numpy scalars as Python scalars (np.int64(3) is an integer; np.True_ stays a boolean)."""
    return value.item() if isinstance(value, np.generic) else value


def _as_tuple(value: Any) -> Any:
    """One name, or a list of names, as a tuple (anything else is left for the schema to refuse)."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list) and value else value


Int = Annotated[int, BeforeValidator(_plain)]
Float = Annotated[float, BeforeValidator(_plain)]
Bool = Annotated[bool, BeforeValidator(_plain)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
Names = Annotated[tuple[Name, ...], BeforeValidator(_as_tuple)]
NAMES_TEXT = (f"a non-empty list of non-empty strings (at most {MAX_NAME_LENGTH} characters "
              "each), or one string")
NAME_TEXT = f"a non-empty string of at most {MAX_NAME_LENGTH} characters"
#: A device as a user names it: a kind, optionally with an index (``cpu``, ``gpu``, ``cuda:1``);
#: which kinds a backend has is checked where it is resolved (:func:`benchsuite.backends.resolve`).
Device = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]+(:[0-9]+)?$", max_length=64)]


def _between(lo: float, hi: float, default: Any) -> Any:
    return Field(default, ge=lo, le=hi, description=f"between {_fmt(lo)} and {_fmt(hi)}")


def _positive(hi: float, default: Any, note: str = "") -> Any:
    return Field(default, gt=0, le=hi, description=f"> 0 and <= {_fmt(hi)}{note}")


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


_BUDGET, _RECORDING = Budget(), Recording()


class BudgetSchema(_Strict):
    """``[budget]``; a key left out takes :class:`~benchsuite.harness.Budget`'s default."""

    t_max: Float = _positive(MAX_T_MAX, _BUDGET.t_max)
    max_steps: Int = _between(1, MAX_MAX_STEPS, _BUDGET.max_steps)
    max_evals: Int | None = _between(1, MAX_MAX_EVALS, _BUDGET.max_evals)
    wall_time: Float = _positive(MAX_WALL_TIME, _BUDGET.wall_time, " (a week)")
    extend: Int = _between(0, MAX_EXTEND, _BUDGET.extend)


class RecordingSchema(_Strict):
    """``[recording]``; a key left out takes :class:`~benchsuite.harness.Recording`'s default."""

    per_octave: Int = _between(1, MAX_PER_OCTAVE, _RECORDING.per_octave)
    t_min: Float = _between(*T_MIN_RANGE, _RECORDING.t_min)
    trajectories: Int | None = _between(1, MAX_N_POINTS, _RECORDING.trajectories)


def _default_budget() -> BudgetSchema:
    # imported here: campaign.py imports this module
    from benchsuite.campaign import DEFAULT_CAMPAIGN_BUDGET

    return BudgetSchema.model_validate(dataclasses.asdict(DEFAULT_CAMPAIGN_BUDGET))


class CampaignSchema(_Strict):
    """A whole campaign; a key left out takes the default of :class:`Campaign`."""

    problems: Names = Field(("*",), min_length=1, description=NAMES_TEXT)
    integrators: Names = Field(("*",), min_length=1, description=NAMES_TEXT)
    n_points: Int = _between(1, MAX_N_POINTS, 16)
    seed: Int = _between(0, MAX_SEED, 0)
    budget: BudgetSchema = Field(default_factory=_default_budget)
    recording: RecordingSchema = Field(default_factory=RecordingSchema)
    certificates: Bool = True
    shard_size: Int = _between(1, MAX_N_POINTS, DEFAULT_SHARD_SIZE)
    executor: Name = "local"
    backend: Literal[BACKENDS] = Field("numpy", description="one of " + ", ".join(BACKENDS))
    device: Device | None = Field(None, description="a device such as cpu, gpu or gpu:1, or "
                                  "left out (the backend's default)")


def validate_campaign(data: Any) -> CampaignSchema:
    """The campaign described by ``data`` (parsed TOML, or a Campaign's fields as a dict).

    Raises :class:`SchemaError` naming every bad entry.
    """
    try:
        return CampaignSchema.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(describe(exc.errors())) from None


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 4
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _show(value: Any) -> str:
    try:
        return _REPR.repr(value)
    except RecursionError:
        return "(nested too deeply to show)"


def _base_type(info: FieldInfo) -> tuple[type | None, bool]:
    """A field's scalar type (int, float, bool; None for others) and whether None is allowed."""
    annotation = info.annotation
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        optional = type(None) in args
        annotation = next(a for a in args if a is not type(None))
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return (annotation if annotation in (int, float, bool) else None), optional


def _keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def describe(errors: list[ErrorDetails]) -> list[str]:
    """One line per bad entry of a campaign, from pydantic's errors."""
    unknown: dict[tuple[Any, ...], list[Any]] = {}
    with_bad_items = {err["loc"][:-1] for err in errors
                      if err["loc"] and isinstance(err["loc"][-1], int)}
    lines: list[str] = []
    for err in errors:
        loc = err["loc"]
        if err["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(loc[-1])
        elif not (err["type"] == "too_short" and loc in with_bad_items):
            lines.append(_line(loc, err["type"], err["input"]))
    head = []
    for parent, keys in unknown.items():
        names = sorted(keys, key=str)
        if parent:
            section = str(parent[0])
            allowed = _keys(_section_model(section) or CampaignSchema)
            head.append(f"[{section}]: unknown key(s) {names}; [{section}] accepts only "
                        f"{sorted(allowed)}")
        else:
            head.append(f"unknown key(s) {names}; allowed: {sorted(_keys(CampaignSchema))}")
    return list(dict.fromkeys(head + lines))


def _section_model(name: str) -> type[BaseModel] | None:
    info = CampaignSchema.model_fields.get(name)
    annotation = info.annotation if info else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) \
        else None


def _line(loc: tuple[Any, ...], kind: str, value: Any) -> str:
    got = f"(got {_show(value)})"
    if not loc:
        return f"a campaign must be a table with keys among {sorted(_keys(CampaignSchema))} {got}"
    section = _section_model(str(loc[0]))
    if section is not None:
        if len(loc) == 1:
            return (f"[{loc[0]}] must be a table with keys among {sorted(_keys(section))} "
                    f"{got}")
        where, model, name, rest = f"[{loc[0]}]: {loc[0]} {loc[1]}", section, loc[1], loc[2:]
    else:
        where, model, name, rest = str(loc[0]), CampaignSchema, loc[0], loc[1:]
    info = model.model_fields.get(str(name))
    if info is None:  # not expected: every error is on a field
        return f"{where}: invalid {got}"
    if rest and isinstance(rest[0], int):
        return f"{where}[{rest[0]}] must be {NAME_TEXT} {got}"
    scalar, optional = _base_type(info)
    if scalar is bool:
        return f"{where} must be true or false {got}"
    if scalar is float:
        return f"{where} must be a finite number {info.description} {got}"
    if scalar is int:
        if kind in _RANGE_ERRORS:
            return f"{where} must be {info.description} {got}"
        return (f"{where} must be an integer {info.description}"
                f"{', or left out' if optional else ''} {got}")
    return f"{where} must be {info.description} {got}"
