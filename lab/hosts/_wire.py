"""The agent's wire format: one JSON object per line, dataclasses checked field by field.

What the far end sends is untrusted input, so nothing is unpickled: every value is
decoded against the type its dataclass field declares (``int`` stays an int, ``bytes``
travels as base64, tuples come back as tuples), and anything else is refused. Fields
are found with :func:`dataclasses.fields`, so fields added to the endpoint's settings
or results travel without a change here.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import types
import typing
from typing import Any, TypeVar, Union

__all__ = [
    "MAX_LINE_BYTES",
    "WireError",
    "control_message",
    "decode",
    "dumps_line",
    "encode",
    "loads_line",
]

#: The longest line either side accepts (a large run's result is a few tens of MB).
MAX_LINE_BYTES = 512 * 1024 * 1024

T = TypeVar("T")


class WireError(ValueError):
    """A line or a value that does not match what the protocol allows."""


_SCALARS = (int, float, str, bool, type(None))


def encode(value: object) -> Any:
    """A JSON-ready form of ``value`` (dataclasses as objects, bytes as base64)."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, list | tuple):
        return [item if type(item) in _SCALARS else encode(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, _SCALARS):  # subclasses: enums of str, int
        return value
    raise WireError(f"cannot send a {type(value).__name__}")


def decode(kind: type[T], data: object) -> T:
    """``data`` (parsed JSON) checked and rebuilt as a ``kind`` dataclass."""
    try:
        return typing.cast(T, _decoder(typing.cast(Any, kind))(data))
    except _MismatchError as error:
        raise WireError(f"{kind.__name__}{error.where}: {error.message}") from None


class _MismatchError(Exception):
    """Raised deep inside a decoder; the path is prepended on the way out (cheap success)."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def inside(self, step: str) -> _MismatchError:
        self.where = step + self.where
        return self


_Decoder = typing.Callable[[object], Any]


@functools.cache
def _decoder(kind: Any) -> _Decoder:
    """A checking function for values of type ``kind``, built once per type."""
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return _dataclass_decoder(kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        options = [_decoder(option) for option in args]

        def union(data: object) -> Any:
            for option in options:
                try:
                    return option(data)
                except _MismatchError:
                    continue
            raise _MismatchError(f"{_show(data)} is none of {kind}")

        return union
    if kind in _SCALAR_DECODERS:
        return _SCALAR_DECODERS[kind]
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return _sequence_decoder(_decoder(args[0]), list if origin is list else tuple)
    if origin is tuple:
        return _tuple_decoder(tuple(_decoder(arg) for arg in args))
    if origin is dict and args[0] is str:
        value = _decoder(args[1])

        def mapping(data: object) -> Any:
            if not isinstance(data, dict):
                raise _MismatchError(f"expected an object, got {_show(data)}")
            out = {}
            for key, item in data.items():
                try:
                    out[key] = value(item)
                except _MismatchError as error:
                    raise error.inside(f".{key}") from None
            return out

        return mapping
    raise WireError(f"type {kind} cannot travel")


def _sequence_decoder(item: _Decoder, build: type) -> _Decoder:
    def sequence(data: object) -> Any:
        if not isinstance(data, list):
            raise _MismatchError(f"expected a list, got {_show(data)}")
        try:
            return build([item(element) for element in data])
        except _MismatchError as error:
            for index, element in enumerate(data):  # only on failure: find where
                try:
                    item(element)
                except _MismatchError:
                    raise error.inside(f"[{index}]") from None
            raise

    return sequence


def _tuple_decoder(items: tuple[_Decoder, ...]) -> _Decoder:
    def fixed(data: object) -> Any:
        if not isinstance(data, list) or len(data) != len(items):
            raise _MismatchError(f"expected {len(items)} items, got {_show(data)}")
        out = []
        for index, (item, element) in enumerate(zip(items, data, strict=True)):
            try:
                out.append(item(element))
            except _MismatchError as error:
                raise error.inside(f"[{index}]") from None
        return tuple(out)

    return fixed


def _dataclass_decoder(kind: type) -> _Decoder:
    hints = typing.get_type_hints(kind)
    fields = [f for f in dataclasses.fields(kind) if f.init]
    decoders = {f.name: _decoder(hints[f.name]) for f in fields}
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }

    def instance(data: object) -> Any:
        if not isinstance(data, dict):
            raise _MismatchError(f"expected an object, got {_show(data)}")
        unknown = set(data) - decoders.keys()
        if unknown:
            raise _MismatchError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        missing = required - data.keys()
        if missing:
            raise _MismatchError(f"field {sorted(missing)[0]!r} is missing")
        values = {}
        for name, value in data.items():
            try:
                values[name] = decoders[name](value)
            except _MismatchError as error:
                raise error.inside(f".{name}") from None
        return kind(**values)

    return instance


def _boolean(data: object) -> bool:
    if type(data) is not bool:
        raise _MismatchError(f"expected a boolean, got {_show(data)}")
    return data


def _integer(data: object) -> int:
    if type(data) is not int:
        raise _MismatchError(f"expected an integer, got {_show(data)}")
    return data


def _number(data: object) -> float:
    if type(data) is float:
        return data
    if type(data) is not int:
        raise _MismatchError(f"expected a number, got {_show(data)}")
    return float(data)


def _string(data: object) -> str:
    if type(data) is not str:
        raise _MismatchError(f"expected a string, got {_show(data)}")
    return data


def _null(data: object) -> None:
    if data is not None:
        raise _MismatchError(f"expected null, got {_show(data)}")


def _bytes(data: object) -> bytes:
    if type(data) is not str:
        raise _MismatchError(f"expected base64 bytes, got {_show(data)}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _MismatchError("not base64") from None


_SCALAR_DECODERS: dict[Any, _Decoder] = {
    bool: _boolean,
    int: _integer,
    float: _number,
    str: _string,
    type(None): _null,
    bytes: _bytes,
}


def _show(data: object) -> str:
    text = json.dumps(data, default=str) if not isinstance(data, str) else repr(data)
    return text if len(text) <= 40 else text[:37] + "..."


def dumps_line(message: dict[str, Any]) -> bytes:
    """One message as a line (no newline inside: JSON escapes them)."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def loads_line(line: bytes) -> dict[str, Any]:
    """One received line as a message: a JSON object with a string ``op``."""
    if len(line) > MAX_LINE_BYTES:
        raise WireError(f"a line of {len(line)} bytes (at most {MAX_LINE_BYTES})")
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise WireError(f"not JSON: {error}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise WireError(f"not a message: {_show(message)}")
    return message


def control_message(message: object) -> list[str | int | float | bool | None]:
    """An endpoint control message: a name, then plain values (never objects)."""
    if (
        not isinstance(message, list | tuple)
        or not message
        or not isinstance(message[0], str)
        or not all(v is None or isinstance(v, str | int | float | bool) for v in message)
    ):
        raise WireError(f"not a control message: {message!r:.80}")
    return list(message)
