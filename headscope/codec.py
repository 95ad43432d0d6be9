"""One JSON codec for the frozen dataclasses that capability functions return.

A result crosses every process boundary (CLI output, batch job, Ray worker, app payload, session file) as JSON,
and comes back as the same typed value: `Result.from_json(result.to_json()) == result`. The mapping is derived
from the dataclass fields and their type hints, so a new field needs no hand-written pair:

- dataclasses → objects (field name, or `jfield(name=...)`); tuples and lists → arrays; dicts → objects
  (keys as strings); numpy arrays, numpy scalars and tensors → plain numbers and nested lists;
- a float that is NaN or ±inf → `null` (strict JSON); read back as NaN where the hint is `float`;
- `jfield(digits=n)` rounds every float inside the field on output (what a report shows, not what it computed);
- `jfield(skip=True)` keeps a field (a tensor, a cache) out of the JSON; it must have a default;
- `json_extra = ("prop", ...)` (a class attribute) adds read-only properties to the output; they are ignored on
  input, so derived values never disagree with the fields they come from;
- on input every key is checked against the type hints: a missing field without a default, an unknown key or a
  value of the wrong type raises one `InputError` line naming the path (`report.methods.eap.scores[3]`);
  `json_ignore_unknown = True` (a class attribute) skips unknown keys instead: a config read from files that
  older and newer versions wrote.
`init=False` fields are written and recomputed (not read) on input.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union

import numpy as np

from headscope.errors import InputError

T = TypeVar("T")

_META = "headscope.codec"


def jfield(
    *,
    name: str | None = None,
    digits: int | None = None,
    skip: bool = False,
    encode: Callable[[Any], Any] | None = None,
    decode: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """`dataclasses.field` with codec options (`default`, `default_factory`, `compare`, ... pass through)."""
    if skip and "default" not in kwargs and "default_factory" not in kwargs:
        raise TypeError("a skipped field needs a default (it is not read back from JSON)")
    meta = {"name": name, "digits": digits, "skip": skip, "encode": encode, "decode": decode}
    return dataclasses.field(metadata={_META: meta}, **kwargs)


def _opts(f: dataclasses.Field) -> dict[str, Any]:
    return f.metadata.get(_META, {})


def _key(f: dataclasses.Field) -> str:
    return _opts(f).get("name") or f.name


# ---------------------------------------------------------------------------------------------------- encoding
def encode(value: Any, digits: int | None = None) -> Any:
    """Any supported value → plain JSON data (dict / list / str / int / float / bool / None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_dataclass(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _float_out(float(value), digits)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Mapping):
        return {str(k): encode(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v, digits) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays, torch tensors
        return encode(value.tolist(), digits)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _float_out(x: float, digits: int | None) -> float | None:
    if not math.isfinite(x):
        return None
    return round(x, digits) if digits is not None else x


def _encode_dataclass(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        opts = _opts(f)
        if opts.get("skip"):
            continue
        value = getattr(obj, f.name)
        if opts.get("encode") is not None and value is not None:
            value = opts["encode"](value)
        out[_key(f)] = encode(value, opts.get("digits"))
    for prop in getattr(type(obj), "json_extra", ()):
        out[prop] = encode(getattr(obj, prop))
    return out


# ---------------------------------------------------------------------------------------------------- decoding
def decode(tp: Any, data: Any, where: str = "value") -> Any:
    """Plain JSON data → a value of type `tp` (a dataclass, a typing form, a builtin), checked on the way."""
    if tp is Any or tp is object:
        return data
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data, where)
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _decode_union(typing.get_args(tp), data, where)
    if origin is Literal:
        if data not in typing.get_args(tp):
            allowed = ", ".join(repr(a) for a in typing.get_args(tp))
            raise InputError(f"{where} must be one of {allowed}, got {data!r}")
        return data
    if origin in (tuple, list):
        return _decode_sequence(tp, origin, data, where)
    if origin is dict or tp is dict:
        return _decode_dict(tp, data, where)
    if origin is ClassVar:
        return data
    return _decode_scalar(tp, data, where)


def _decode_union(args: tuple[Any, ...], data: Any, where: str) -> Any:
    if data is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return decode(arg, data, where)
        except InputError as e:
            errors.append(str(e))
    raise InputError(errors[0] if len(errors) == 1 else f"{where} has an unexpected value {_short(data)}")


def _decode_sequence(tp: Any, origin: type, data: Any, where: str) -> Any:
    if not isinstance(data, list | tuple):
        raise InputError(f"{where} must be a list, got {_short(data)}")
    args = typing.get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(data):
            raise InputError(f"{where} must have {len(args)} items, got {len(data)}")
        return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
    item = args[0] if args else Any
    items = [decode(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
    return tuple(items) if origin is tuple else items


def _decode_dict(tp: Any, data: Any, where: str) -> dict[Any, Any]:
    if not isinstance(data, dict):
        raise InputError(f"{where} must be an object, got {_short(data)}")
    args = typing.get_args(tp)
    key_tp, val_tp = args if args else (str, Any)
    out = {}
    for k, v in data.items():
        key = int(k) if key_tp is int else k
        out[key] = decode(val_tp, v, f"{where}.{k}")
    return out


def _decode_scalar(tp: Any, data: Any, where: str) -> Any:
    if tp is float:
        if data is None:
            return math.nan  # NaN and ±inf are written as null
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
    elif tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        if isinstance(data, float) and data.is_integer():
            return int(data)
    elif tp is bool or tp is str:
        if isinstance(data, tp):
            return data
    elif tp is np.ndarray:
        return _array(data, where)
    elif tp is type(None):
        if data is None:
            return None
    else:
        raise TypeError(f"codec cannot decode the type {tp!r} ({where})")
    name = getattr(tp, "__name__", str(tp))
    raise InputError(f"{where} must be {_article(name)}, got {_short(data)}")


def _array(data: Any, where: str) -> np.ndarray:
    def clean(x: Any) -> Any:
        if isinstance(x, list):
            return [clean(v) for v in x]
        return math.nan if x is None else x

    try:
        return np.asarray(clean(data), dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{where} must be a numeric array") from None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode_dataclass(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise InputError(f"{where} must be an object, got {_short(data)}")
    hints = _hints(cls)
    known: set[str] = set(getattr(cls, "json_extra", ()))
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        opts, key = _opts(f), _key(f)
        known.add(key)
        if opts.get("skip") or not f.init or key not in data:
            if f.init and not opts.get("skip") and _required(f):
                raise InputError(f"{where} is missing '{key}'")
            continue
        raw = data[key]
        if opts.get("decode") is not None and raw is not None:
            kwargs[f.name] = opts["decode"](raw)
        else:
            kwargs[f.name] = decode(hints[f.name], raw, f"{where}.{key}")
    unknown = sorted(set(data) - known)
    if unknown and not getattr(cls, "json_ignore_unknown", False):
        raise InputError(f"{where} has unknown field(s): {', '.join(unknown)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _short(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 40 else text[:37] + "..."


def _article(name: str) -> str:
    return ("an " if name[:1] in "aeiou" else "a ") + name


# ---------------------------------------------------------------------------------------------------- mixin
class JsonCodec:
    """Mixin for frozen result dataclasses: `to_json()` and `from_json(data)` through this module.

    `where` names the value in error messages (defaults to the class name).
    """

    json_extra: ClassVar[tuple[str, ...]] = ()
    json_ignore_unknown: ClassVar[bool] = False

    def to_json(self) -> dict[str, Any]:
        return encode(self)

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> typing.Self:
        return decode(cls, data, where or cls.__name__)
