"""MXNet attribute strings read exactly as MXNet 1.9.1's C++ parsers read them (no MXNet import).

Every MXNet attribute is a string in the symbol JSON. MXNet parses them with a few C++ stream
readers, which accept more than Python's literals and refuse some of them:

- tuples (``Shape(tuple)``, ``tuple of <int>``; ``mxnet::Tuple::operator>>``): ``(1, 2)``,
  ``[1,2]``, ``(1,)``, ``()``, a bare ``3``, and a Python-2 long suffix after integer items
  (``(8L, 3L)``, written by ``str()`` of a tuple of longs); ``None`` (an unknown shape);
- integers (``std::istream >> int``): leading blanks and a sign, no suffix (``8L`` is refused);
- ``int or None`` (``dmlc::optional<int>``): ``None``, or an integer followed by one ``L``;
- floats (``dmlc::stof``): ``1.5``, ``.5``, ``1e-3``, ``inf``, ``nan``, an ``f`` suffix;
- booleans: ``true``/``false``/``1``/``0`` in any case, nothing else.

An operator's parameters must be wholly consumed (trailing blanks only: dmlc's ``FieldEntry``);
a variable's ``__shape__``/``__dtype__`` are read by the shape/type inference passes, which take
the leading value and ignore what follows (``stream=True``). Everything that reads attribute
strings in this project goes through here, so it accepts exactly what MXNet accepts.
"""
from __future__ import annotations

import math
import re
from typing import Any, Optional, Union

Item = Union[int, float, None]

_SPACE = " \t\n\v\f\r"
_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_STOF = re.compile(r"([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?)([0-9]*))?")  # dmlc::stof's digits, all optional
_FLOAT = re.compile(r"[ \t\n\v\f\r]*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_INT_BITS = {"int": 32, "long": 64, "dim": 64}


class AttrParseError(ValueError):
    """MXNet would refuse the string (the message says what MXNet expected)."""


class _Stream:
    """A cursor over the text with the few ``std::istream`` operations MXNet's readers use."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def get(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def skip_space(self) -> None:
        while self.peek() and self.peek() in _SPACE:
            self.pos += 1

    def rest(self) -> str:
        return self.text[self.pos:]

    def read_int(self, bits: int = 64) -> Optional[int]:
        """``is >> int``: blanks, an optional sign, digits; None (the stream fails) otherwise."""
        match = _INT.match(self.text, self.pos)
        if match is None or not -(2 ** (bits - 1)) <= int(match.group(1)) < 2 ** (bits - 1):
            return None
        self.pos = match.end()
        return int(match.group(1))

    def read_float(self) -> Optional[float]:
        """``is >> float``: ``[+-](digits[.digits]|.digits)[e[+-]digits]``; no inf/nan, no suffix."""
        match = _FLOAT.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return float(match.group(1))

    def read_optional_int(self) -> tuple[bool, Optional[int]]:
        """``is >> dmlc::optional<int>``: ``None``, or an int and one optional ``L``."""
        if self.text.startswith("None", self.pos):
            self.pos += 4
            return True, None
        value = self.read_int()
        if value is None:
            return False, None
        if self.peek() == "L":
            self.pos += 1
        return True, value


def _fail(text: str, expected: str) -> AttrParseError:
    return AttrParseError(f"{text!r} is not {expected} as MXNet reads it")


def _read_item(stream: _Stream, item: str) -> tuple[bool, Item]:
    if item == "float":
        value = stream.read_float()
        return value is not None, value
    if item == "optional_int":
        return stream.read_optional_int()
    value = stream.read_int(_INT_BITS.get(item, 64))
    return value is not None, value


def _read_tuple(stream: _Stream, item: str) -> tuple[bool, Optional[tuple]]:
    """``mxnet::Tuple<T>::operator>>``; ``(True, None)`` for ``None`` (an unknown shape)."""
    integral = item in _INT_BITS
    while True:
        ch = stream.peek()
        if (ch.isdigit() and ch.isascii()) or ch == "-":
            ok, value = _read_item(stream, item)
            return ok, (value,) if ok else None
        stream.get()
        if ch in ("(", "["):
            break
        if ch == "" or ch not in _SPACE:
            if ch == "N":  # MXNet reads the next word: "None" is an unknown shape
                word_end = stream.pos
                while word_end < len(stream.text) and stream.text[word_end] not in _SPACE:
                    word_end += 1
                word, stream.pos = stream.text[stream.pos:word_end], word_end
                if word == "one":
                    return True, None
            return False, None
    stream.skip_space()
    if stream.peek() in (")", "]") and stream.peek():
        stream.get()
        return True, ()
    values: list[Item] = []
    while True:
        ok, value = _read_item(stream, item)
        if not ok:
            return False, None
        values.append(value)
        ch = stream.get()
        while ch and ch in _SPACE:
            ch = stream.get()
        if integral and ch == "L":
            ch = stream.get()
        if ch == ",":
            stream.skip_space()
            if stream.peek() in (")", "]") and stream.peek():
                stream.get()
                return True, tuple(values)
        elif ch in (")", "]") and ch:
            return True, tuple(values)
        else:
            return False, None


def _check_tail(stream: _Stream, text: str, expected: str, stream_mode: bool) -> None:
    if not stream_mode and stream.rest().strip(_SPACE):
        raise _fail(text, expected)


def parse_tuple(text: str, item: str = "dim", *, stream: bool = False) -> Optional[tuple]:
    """A tuple attribute (``item``: ``dim``/``int``/``long`` integers, ``float`` or
    ``optional_int``); ``None`` for MXNet's unknown shape ``None``. ``stream=True`` reads only the
    leading tuple, as MXNet's inference passes read ``__shape__``."""
    reader = _Stream(str(text))
    ok, value = _read_tuple(reader, item)
    if not ok:
        raise _fail(text, f"a tuple of {item} values")
    _check_tail(reader, text, f"a tuple of {item} values", stream)
    return value


def parse_int(text: str, bits: int = 32, *, stream: bool = False) -> int:
    """An integer parameter (``int``: 32 bits, ``long``: 64), as ``std::istream >> int`` reads it."""
    reader = _Stream(str(text))
    value = reader.read_int(bits)
    if value is None:
        raise _fail(text, "an integer")
    _check_tail(reader, text, "an integer", stream)
    return value


def parse_optional_int(text: str) -> Optional[int]:
    """An ``int or None`` parameter: ``None`` or an integer (a trailing ``L`` is allowed)."""
    reader = _Stream(str(text))
    ok, value = reader.read_optional_int()
    if not ok:
        raise _fail(text, "an integer or None")
    _check_tail(reader, text, "an integer or None", False)
    return value


def parse_bool(text: str) -> bool:
    """A boolean parameter: ``true``/``false``/``1``/``0`` in any case (no blanks)."""
    lowered = str(text).lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise _fail(text, "a boolean")


def parse_float(text: str, bits: int = 64) -> float:
    """A float (``bits=32``) or double parameter as ``dmlc::stof``/``stod`` read it: blanks, a
    sign, ``inf``/``infinity``/``nan`` in any case, ``.5``, ``5.``, an exponent (its digits may be
    missing) and an ``f`` suffix; at least one character must be consumed, nothing may follow,
    and a finite number too large for the type is refused."""
    text = str(text)
    pos = 0
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    negative = pos < len(text) and text[pos] == "-"
    if pos < len(text) and text[pos] in "+-":
        pos += 1
    lowered = text[pos:].lower()
    special = next((w for w in ("infinity", "inf", "nan") if lowered.startswith(w)), None)
    if special is not None:
        pos += len(special)
        value = math.nan if special == "nan" else math.inf
        if special == "nan" and text[pos:pos + 1] == "(":
            end = text.find(")", pos)
            if end < 0:
                raise _fail(text, "a number")
            pos = end + 1
    else:
        match = _STOF.match(text, pos)
        whole, fraction, sign, exponent = match.groups()
        pos = match.end()
        literal = f"{whole or '0'}.{fraction or '0'}" + (f"e{sign}{exponent}" if exponent else "")
        value = float(literal)
        limit = 3.4028234663852886e38 if bits == 32 else 1.7976931348623157e308
        if abs(value) > limit:
            raise AttrParseError(f"{text!r} is out of range for a {bits}-bit float as MXNet reads it")
    if pos < len(text) and text[pos] in "fF":
        pos += 1
    if pos == 0 or text[pos:]:
        raise _fail(text, "a number")
    return -value if negative else value


def declared_kind(type_text: str) -> str:
    """The reader MXNet uses for a parameter, from its declared type text (as
    ``mxnet.operator.get_operator_arguments`` lists it): ``tuple``, ``float_tuple``, ``int``,
    ``long``, ``optional_int``, ``float``, ``optional_float``, ``bool``, ``optional_bool`` or
    ``other`` (enums, strings: compared as written)."""
    base = type_text.split(",")[0].strip()
    kinds = {
        "Shape(tuple)": "tuple", "Shape or None": "tuple", "tuple of <int>": "tuple", "tuple of <long>": "tuple",
        "tuple of <float>": "float_tuple", "tuple of <double>": "float_tuple",
        "int": "int", "int (non-negative)": "int", "long": "long", "long (non-negative)": "long",
        "int or None": "optional_int", "float": "float", "double": "float", "real_t": "float",
        "float or None": "optional_float", "double or None": "optional_float",
        "boolean": "bool", "boolean or None": "optional_bool",
    }
    return kinds.get(base, "other")


def parse_declared(text: str, type_text: str) -> Any:
    """``text`` read with the reader MXNet uses for a parameter of type ``type_text``; raises
    :class:`AttrParseError` where MXNet would refuse it (``other`` kinds: the text itself)."""
    kind = declared_kind(type_text)
    optional = kind.startswith("optional_") or type_text.startswith("Shape or None")
    if optional and str(text) == "None":
        return None
    if kind == "tuple":
        try:
            return parse_tuple(text, "dim")
        except AttrParseError:
            return parse_tuple(text, "optional_int")  # Tuple<optional<int>> (slice begin/end, ...)
    if kind == "float_tuple":
        return parse_tuple(text, "float")
    if kind in ("int", "long"):
        return parse_int(text, _INT_BITS[kind])
    if kind == "optional_int":
        return parse_optional_int(text)
    if kind in ("float", "optional_float"):
        return parse_float(text, 32 if type_text.startswith("float") else 64)
    if kind in ("bool", "optional_bool"):
        return parse_bool(text)
    return str(text)


def _write(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_write(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def canonical(text: str, type_text: str) -> str:
    """``text`` rewritten the way Python-3 MXNet writes that value (``(8L, 3L)`` -> ``(8, 3)``,
    ``TRUE`` -> ``True``, `` 8`` -> ``8``, ``1.5f`` -> ``1.5``); unchanged if MXNet's reader
    for ``type_text`` would not accept it or the type is an enum or a string."""
    if declared_kind(type_text) == "other":
        return str(text)
    try:
        return _write(parse_declared(text, type_text))
    except AttrParseError:
        return str(text)


def parse_literal(text: str) -> Any:
    """A value of unknown declared type, read the way MXNet would read it: a boolean word, an
    integer, a float, ``None`` or a tuple (of integers, then floats); raises
    :class:`AttrParseError` if no MXNet reader accepts it."""
    text = str(text)
    stripped = text.strip(_SPACE)
    if stripped in ("True", "False", "true", "false"):
        return stripped.lower() == "true"
    if stripped == "None":
        return None
    for read in (lambda t: parse_int(t, 64), lambda t: parse_optional_int(t), parse_float):
        try:
            return read(stripped)
        except AttrParseError:
            pass
    for item in ("dim", "optional_int", "float"):
        try:
            return parse_tuple(stripped, item)
        except AttrParseError:
            pass
    raise _fail(text, "a number, boolean or tuple")
