"""The error hierarchy renders one line naming file, node and op, with the documented exit codes."""
from __future__ import annotations

from common.errors import (
    EXIT_BAD_INPUT, EXIT_UNSUPPORTED, ConversionError, ModelLoadError, UnsupportedOpError, VerificationError,
)


def test_unsupported_op_names_everything():
    err = UnsupportedOpError("FancyOp", 17, "node_3", supported_versions=[18, 21], file="m.onnx")
    text = str(err)
    assert text == "m.onnx: node_3 (FancyOp): unsupported op FancyOp at opset 17 (converters exist from opset 18, 21)"
    assert err.exit_code == EXIT_UNSUPPORTED


def test_context_is_filled_from_outside_in_and_message_is_one_line():
    err = ModelLoadError("bad\nthing   here")
    err.with_context(node="n1", op_type="Conv").with_context(file="a.onnx", node="ignored")
    assert str(err) == "a.onnx: n1 (Conv): bad thing here"
    assert err.exit_code == EXIT_BAD_INPUT
    assert issubclass(VerificationError, ConversionError) and VerificationError.exit_code == EXIT_UNSUPPORTED
