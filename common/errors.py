"""One exception hierarchy for every converter, so CLIs can turn any failure into one clear line.

Every error knows (when it can) the file, the node and the op it is about; ``str(err)`` is the
line a CLI prints after ``error:``. Exit codes: 2 for bad input, 3 for an unsupported op or a
failed verification.
"""
from __future__ import annotations

from typing import Iterable, Optional

EXIT_BAD_INPUT = 2
EXIT_UNSUPPORTED = 3


class ConversionError(Exception):
    """Base of every error the toolkit raises on purpose."""

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        file: Optional[str] = None,
        node: Optional[str] = None,
        op_type: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = None if file is None else str(file)
        self.node = node
        self.op_type = op_type

    def with_context(
        self, *, file: Optional[str] = None, node: Optional[str] = None, op_type: Optional[str] = None
    ) -> "ConversionError":
        """Fill in missing context (outer layers know the file, inner ones the node)."""
        if self.file is None and file is not None:
            self.file = str(file)
        if self.node is None and node is not None:
            self.node = node
        if self.op_type is None and op_type is not None:
            self.op_type = op_type
        return self

    def __str__(self) -> str:
        where = location(self.file, self.node, self.op_type)
        message = " ".join(str(self.message).split())  # always one line
        return f"{where}: {message}" if where else message


def location(file: Optional[str], node: Optional[str], op_type: Optional[str]) -> str:
    """``file: node (op)``, the parts that are known: how errors and warnings name a place."""
    parts = [str(file)] if file else []
    if node is not None or op_type:
        where = node if node else "<unnamed>"
        if op_type:
            where += f" ({op_type})"
        parts.append(where)
    return ": ".join(parts)


class ModelLoadError(ConversionError):
    """A model file is missing, unreadable, corrupt or not what it claims to be."""


class SecurityError(ModelLoadError):
    """A model tried to reach outside its folder or to run code."""


class ShapeError(ConversionError):
    """Shapes are missing, inconsistent, or of the wrong rank."""


class UnsupportedOpError(ConversionError):
    """No converter exists for this op at this opset."""

    exit_code = EXIT_UNSUPPORTED

    def __init__(
        self,
        op_type: str,
        opset: Optional[int] = None,
        node_name: Optional[str] = None,
        *,
        domain: str = "",
        supported_versions: Iterable[int] = (),
        detail: str = "",
        file: Optional[str] = None,
    ) -> None:
        self.domain = domain
        self.opset = opset
        self.supported_versions = tuple(sorted(supported_versions))
        qualified = f"{domain}::{op_type}" if domain not in ("", "ai.onnx") else op_type
        msg = f"unsupported op {qualified}"
        if opset is not None:
            msg += f" at opset {opset}"
        if self.supported_versions:
            msg += " (converters exist from opset " + ", ".join(map(str, self.supported_versions)) + ")"
        if detail:
            msg += f": {detail}"
        super().__init__(msg, file=file, node=node_name, op_type=op_type)


class ConversionFailure(ConversionError):
    """A supported op could not be converted with these attributes or inputs."""

    exit_code = EXIT_UNSUPPORTED


class VerificationError(ConversionError):
    """The converted model's outputs differ from the reference beyond tolerance."""

    exit_code = EXIT_UNSUPPORTED


def one_line(exc: BaseException) -> str:
    """Render any exception as one line (fallback for errors that are not ours)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
