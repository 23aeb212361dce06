"""Strict JSON for everything benchsuite writes or prints.

Python's :func:`json.dumps` writes ``NaN``, ``Infinity`` and ``-Infinity`` by default, which
is not JSON: ``jq``, JavaScript's ``JSON.parse`` and most other parsers reject it. Here
non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"``, NumPy scalars become
Python numbers, tuples and sets become lists, and anything else unknown is written with
``str``. The output always parses with ``json.loads(s, parse_constant=...)`` refusing every
constant.
"""

from __future__ import annotations

import json
import math
from typing import Any

_SCALARS = (str, int, bool, type(None))


def plain(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name (``"inf"``, ``"-inf"``,
    ``"nan"``), NumPy scalars as Python ones, and tuples and sets as lists."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return [plain(v) for v in sorted(value, key=str)]
    item = getattr(value, "item", None)  # NumPy scalars and 0-d arrays
    if callable(item) and getattr(value, "ndim", None) == 0:
        try:
            return plain(item())
        except (TypeError, ValueError):
            pass
    return value


def _key(key: Any) -> Any:
    if isinstance(key, _SCALARS):
        return key
    if isinstance(key, float):
        return key if math.isfinite(key) else str(key)
    return str(key)


def dumps(obj: Any, **kwargs: Any) -> str:
    """:func:`json.dumps` that never writes ``NaN`` or ``Infinity`` (see :func:`plain`);
    unknown objects are written with ``str``. Keyword arguments go to :func:`json.dumps`
    (``allow_nan`` is always False)."""
    kwargs.pop("allow_nan", None)
    kwargs.setdefault("default", str)
    return json.dumps(plain(obj), allow_nan=False, **kwargs)


def _refuse(constant: str) -> Any:
    raise ValueError(f"not strict JSON: bare {constant}")


def loads(text: str | bytes) -> Any:
    """Parse strict JSON: ``NaN``, ``Infinity`` and ``-Infinity`` are refused (ValueError)."""
    return json.loads(text, parse_constant=_refuse)
