"""The few pieces of protobuf's wire format that let models be written and read field by field.

Protobuf messages are concatenations of fields: a key (field number and wire type, a varint), then
a varint, 4 or 8 bytes, or a varint length and that many bytes. Writing or reading a model field by
field keeps its weights out of the serialized copies protobuf would otherwise make.
"""
from __future__ import annotations

LENGTH_DELIMITED = 2


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field_number: int, wire_type: int = LENGTH_DELIMITED) -> bytes:
    return encode_varint((field_number << 3) | wire_type)


def delimited(field_number: int, payload: bytes) -> bytes:
    """A whole length-delimited field: key, length, payload."""
    return key(field_number) + encode_varint(len(payload)) + payload


__all__ = ["LENGTH_DELIMITED", "delimited", "encode_varint", "key"]
