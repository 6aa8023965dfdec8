"""Which inputs an MXNet symbol takes, with what shapes and dtypes.

Inputs are the symbol's arguments that are neither parameters nor labels of a loss head
(:mod:`common.mxnet_heads`; a shape given for a label is accepted and not needed). Shapes come
from the caller (by name, or in input order), else from the ``__shape__`` MXNet stores for a
variable declared with ``shape=`` (read as MXNet reads it, Python-2 ``8L`` suffixes included),
else from MXNet's shape inference when the parameters determine them; otherwise one line asks
for ``--input-shape``. A declared ``__shape__``/``__dtype__`` MXNet cannot read is an error only
where MXNet would read it (no shape or dtype given), with MXNet's own reason.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from common.errors import ModelLoadError, ShapeError
from common.mxnet_attrs import AttrParseError
from common.mxnet_heads import label_inputs
from mx2onnx_patches.mxnet_import import import_mxnet

from .validate import MXNET_TYPE_FLAGS, declared_dtype, declared_shape

log = logging.getLogger(__name__)

ShapeArg = Union[None, Mapping[str, Sequence[int]], Sequence[Sequence[int]], Sequence[int]]


@dataclass
class InputPlan:
    names: list[str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]
    labels: list[str] = field(default_factory=list)


def _declared(node: dict, key: str) -> Optional[str]:
    for table in ("attrs", "attr", "param"):
        value = (node.get(table) or {}).get(key)
        if value is not None:
            return value
    return None


def _normalise_shapes(user: ShapeArg, names: Sequence[str],
                      labels: Sequence[str] = ()) -> dict[str, tuple[int, ...]]:
    if user is None:
        return {}
    if isinstance(user, Mapping):
        given_labels = [n for n in user if n in labels and n not in names]
        if given_labels:
            log.info("%s: training label(s), not inputs of the exported model; their shape is not needed",
                     ", ".join(given_labels))
            user = {n: s for n, s in user.items() if n not in given_labels}
        unknown = [n for n in user if n not in names]
        if unknown:
            raise ShapeError(f"--input-shape names {', '.join(repr(n) for n in unknown)}, but the network's "
                             f"inputs are: {', '.join(names) or '(none)'}")
        return {n: tuple(int(d) for d in s) for n, s in user.items()}
    seq = list(user)
    if seq and all(isinstance(d, (int, np.integer)) for d in seq):
        seq = [seq]
    if len(seq) != len(names):
        raise ShapeError(f"{len(seq)} input shape(s) given for {len(names)} input(s) ({', '.join(names)})")
    return {n: tuple(int(d) for d in s) for n, s in zip(names, seq)}


def _inferred(sym: Any, params: Mapping[str, Any], name: str) -> Optional[tuple[int, ...]]:
    """The input's shape if the parameters alone determine it (MXNet partial inference)."""
    arg_names = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    known = {n: tuple(v.shape) for n, v in params.items() if n in arg_names}
    try:
        arg_shapes, _, _ = sym.infer_shape_partial(**known)
    except Exception:  # noqa: BLE001 - inference is only a convenience here
        return None
    for arg, shape in zip(sym.list_arguments(), arg_shapes or []):
        if arg == name and shape and all(d > 0 for d in shape):
            return tuple(shape)
    return None


def _mxnet_reason(name: str, key: str, text: str) -> str:
    """MXNet's own words for a declared attribute it cannot use (it reads it at inference)."""
    from .loading import native_stderr_to_log
    from .op_probe import mxnet_message

    mx = import_mxnet()
    try:
        with native_stderr_to_log():
            variable = mx.sym.var(name, attr={key: text})
            if key == "__shape__":
                variable.infer_shape_partial()
            else:
                variable.infer_type_partial()
    except Exception as exc:  # noqa: BLE001 - MXNetError
        return mxnet_message(exc)
    return "MXNet reads it as unknown"


def _declared_shape(name: str, text: str) -> Optional[tuple[int, ...]]:
    try:
        return declared_shape(text)
    except (AttrParseError, ValueError):
        raise ShapeError(f"input '{name}': MXNet cannot use its declared shape __shape__={text!r} "
                         f"({_mxnet_reason(name, '__shape__', text)}); give the shape with --input-shape "
                         f"{name}:N,C,H,W") from None


def plan_inputs(sym: Any, nodes: list[dict], params: Mapping[str, Any], user_shapes: ShapeArg = None,
                user_dtypes: Optional[Mapping[str, Any]] = None, heads: Optional[Sequence[Sequence[int]]] = None
                ) -> InputPlan:
    labels = label_inputs(nodes, params, heads)
    names = [n for n in sym.list_inputs() if n not in params and n not in labels]
    if not names:
        raise ShapeError("the network has no data input (every argument is a parameter or a label)")
    shapes = _normalise_shapes(user_shapes, names, labels)
    by_name = {n["name"]: n for n in nodes if n["op"] == "null"}
    for name in names:
        if name in shapes:
            continue
        declared = _declared(by_name.get(name, {}), "__shape__")
        shape = _declared_shape(name, declared) if declared is not None else None
        if shape and all(int(d) > 0 for d in shape[1:]) and int(shape[0]) >= 0:
            # a declared batch of 0 means "any": export at batch 1
            shapes[name] = (max(int(shape[0]), 1),) + tuple(int(d) for d in shape[1:])
            continue
        inferred = _inferred(sym, params, name)
        if inferred:
            shapes[name] = inferred
            continue
        raise ShapeError(f"input '{name}' has no declared shape; give it with --input-shape {name}:N,C,H,W "
                         f"(for example --input-shape {name}:1,3,224,224)")
    for name, shape in shapes.items():
        if any(d <= 0 for d in shape):
            raise ShapeError(f"input '{name}': every dimension must be positive, got {','.join(map(str, shape))}")
    dtypes = {}
    for name, value in (user_dtypes or {}).items():
        if name in labels:
            log.info("%s: a training label, not an input of the exported model; its dtype is not needed", name)
            continue
        if name not in names:
            raise ShapeError(f"--input-dtype names '{name}', but the network's inputs are: {', '.join(names)}")
        try:
            dtypes[name] = np.dtype(value)
        except TypeError:
            raise ShapeError(f"--input-dtype {name}:{value}: not a numpy dtype name (e.g. float32, int64)") from None
    for name in names:
        declared = _declared(by_name.get(name, {}), "__dtype__")
        if name not in dtypes:
            dtypes[name] = _mx_dtype(name, declared) if declared is not None else np.dtype(np.float32)
    return InputPlan(names=names, shapes={n: shapes[n] for n in names}, dtypes=dtypes, labels=labels)


def _mx_dtype(name: str, text: str) -> np.dtype:
    """MXNet's ``__dtype__`` attribute is its type flag (0 float32, 1 float64, 2 float16, ...);
    -1 is unknown (float32, MXNet's default for data)."""
    try:
        flag = declared_dtype(text)
    except AttrParseError:
        raise ModelLoadError(f"input '{name}': MXNet cannot use its declared __dtype__={text!r} "
                             f"({_mxnet_reason(name, '__dtype__', text)}); give the dtype with --input-dtype "
                             f"{name}:float32", node=name) from None
    except ValueError as exc:
        raise ModelLoadError(f"input '{name}': {exc}; give the dtype with --input-dtype {name}:float32",
                             node=name) from None
    if flag is None:
        return np.dtype(np.float32)
    if MXNET_TYPE_FLAGS[flag] == "bfloat16":
        raise ModelLoadError(f"input '{name}' is declared bfloat16 (__dtype__={text!r}), which numpy and the "
                             f"exporter cannot feed; give another with --input-dtype {name}:float32", node=name)
    return np.dtype(MXNET_TYPE_FLAGS[flag])
