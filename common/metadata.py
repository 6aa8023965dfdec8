"""Model metadata one side of the toolkit writes for the other (``ModelProto.metadata_props``).

``CONSTANT_INITIALIZERS_KEY``: the float initializers an exporter made itself (MXNet's scalar
operands, the unit gamma standing in for a BatchNorm with ``fix_gamma=True``), as opposed to the
source model's learnt parameters. A trainable conversion keeps those as buffers: training in the
source framework never changed them, and fine-tuning should not either.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Optional

import onnx

log = logging.getLogger(__name__)

CONSTANT_INITIALIZERS_KEY = "x2onnx.constant_initializers"


def set_json(model: onnx.ModelProto, key: str, value: Any) -> None:
    """Store ``value`` as JSON under ``key``, replacing an earlier entry."""
    text = json.dumps(value, sort_keys=True)
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = text
            return
    model.metadata_props.add(key=key, value=text)


def json_value(props: "Iterable[onnx.StringStringEntryProto] | dict[str, str]", key: str) -> Optional[Any]:
    """The JSON value under ``key`` (in a proto's ``metadata_props`` or an onnx-ir model's dict),
    None when absent or not JSON (with a warning)."""
    text = props.get(key) if isinstance(props, dict) else next((p.value for p in props if p.key == key), None)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        log.warning("metadata %s is not JSON; ignored", key)
        return None
