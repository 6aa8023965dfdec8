"""Inputs for verification runs: seeded random data that makes sense, or the user's own.

Random data is reproducible (``seed``) and respects what each input is for: integer inputs that
index something (Gather, GatherElements, OneHot, MXNet Embedding/take) stay in range, inputs of
ops that want probabilities (Bernoulli) lie in [0, 1], inputs of Log/Sqrt are positive, booleans
are booleans, and everything else is uniform in [-1, 1] (the scale of a normalised image).

User data: ``.npy`` (one input) or ``.npz`` (inputs by name), loaded without pickle; an image
file for a 4-D image input, decoded by MXNet's ``mx.image.imdecode`` (no PIL or OpenCV is
needed; without MXNet a clear error says to pass ``.npy``/``.npz`` instead), resized to the
input's height and width, put in the requested channel order and normalised as
``(pixel - mean) / std``.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import onnx

from ..errors import ModelLoadError, ShapeError
from ..mxnet_attrs import AttrParseError, parse_int, parse_tuple
from ..mxnet_heads import label_inputs

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
Dim = Union[int, str, None]


@dataclass
class InputSpec:
    """What a model input expects. ``low``/``high`` bound random values (``high`` exclusive for ints)."""

    name: str
    shape: Optional[tuple[Dim, ...]]
    dtype: str = "float32"
    low: Optional[float] = None
    high: Optional[float] = None
    why: str = ""  # where the range comes from, e.g. "indices of Gather 'emb' (axis size 10)"
    integral: bool = False  # whole numbers in a float input (MXNet's Embedding takes float indices)
    fill: Optional[str] = None  # "ones" (attention masks) or "positions" (0, 1, 2... on the last axis)
    words: tuple[str, ...] = ()  # strings to draw a string input from (the graph's own vocabulary)
    text: bool = False  # a string input the graph tokenizes: several words per element

    def concrete_shape(self) -> tuple[int, ...]:
        if self.shape is None:
            raise ShapeError(f"input {self.name!r} has unknown rank; give its shape with "
                             f"--input-shape {self.name}:D1,D2,...")
        if any(not isinstance(d, int) or d < 0 for d in self.shape):
            shown = ",".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in self.shape)
            raise ShapeError(f"input {self.name!r} has shape ({shown}) with unknown dimensions; give them with "
                             f"--input-shape {self.name}:" + ",".join(
                                 str(d) if isinstance(d, int) and d >= 0 else "N" for d in self.shape))
        return tuple(int(d) for d in self.shape)


@dataclass
class ImageOptions:
    """How an image file becomes a 4-D input tensor."""

    layout: str = "NCHW"  # or "NHWC"
    channel_order: str = "RGB"  # or "BGR"
    mean: Sequence[float] = (0.0, 0.0, 0.0)  # per channel, in channel_order, on 0..255 pixels
    std: Sequence[float] = (1.0, 1.0, 1.0)


@dataclass
class PreparedInputs:
    """Input arrays by name, and where each came from ('random seed 0', 'file x.npz', 'image y.jpg')."""

    arrays: dict[str, np.ndarray]
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": n, "shape": list(a.shape), "dtype": a.dtype.name, "source": self.sources.get(n, "")}
                for n, a in self.arrays.items()]


# --- specs from models ----------------------------------------------------------------------
def specs_from_onnx(model: onnx.ModelProto, input_shapes: Optional[Mapping[str, Sequence[int]]] = None) -> list[InputSpec]:
    """One spec per graph input (initializers excluded), with ranges read from the consumers.

    Read from the proto after onnx's shape inference (no IR of the whole model: the CLI's check
    would otherwise deserialize every node a second time, 50-130 ms on DenseNet-121)."""
    from .. import ir as cir

    input_shapes = dict(input_shapes or {})
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    unknown = [n for n in input_shapes if n not in names]
    if unknown:
        raise ShapeError(f"--input-shape names {', '.join(map(repr, unknown))}, not an input of the model "
                         f"(inputs: {', '.join(names)})")
    graph = _GraphView(cir.infer_shapes(model, data_prop=False).graph)
    specs = []
    for value in model.graph.input:
        if value.name not in names:
            continue
        shape = graph.shape(value.name)
        if value.name in input_shapes:
            shape = tuple(int(d) for d in input_shapes[value.name])
        spec = InputSpec(value.name, shape, _onnx_dtype_name(value.type.tensor_type.elem_type))
        if spec.dtype == "object":
            _words_from_onnx(spec, graph)
        else:
            _range_from_onnx_consumers(spec, value.name, graph)
        specs.append(spec)
    return specs


# String attributes that list what a string input may hold: categories, encoder keys, n-gram pools.
_VOCABULARY_ATTRIBUTES = frozenset({"cats_strings", "keys_strings", "classes_strings", "pool_strings", "stopwords"})
_TOKENIZING_OPS = frozenset({"Tokenizer", "StringSplit"})


def _words_from_onnx(spec: InputSpec, graph: "_GraphView") -> None:
    """Draw a string input from the strings the graph itself compares against (a OneHotEncoder's
    categories, a LabelEncoder's keys, a TfIdfVectorizer's pool), so that random inputs hit them;
    several words per element where the input reaches a tokenizer (through reshapes and
    StringNormalizer)."""
    words: set[str] = set()
    for node in graph.nodes:
        for attr in node.attribute:
            if attr.name in _VOCABULARY_ATTRIBUTES:
                words.update(v.decode("utf-8", "replace") for v in attr.strings)
    frontier, seen = [spec.name], set()
    while frontier and not spec.text:
        name = frontier.pop()
        for node, _ in graph.readers.get(name, ()):
            if node.op_type in _TOKENIZING_OPS:
                spec.text = True
            elif node.op_type in _VALUE_PRESERVING | {"StringNormalizer"} and node.output and node.output[0] not in seen:
                seen.add(node.output[0])
                frontier.append(node.output[0])
    spec.words = tuple(sorted(w for w in words if w))
    spec.why = (f"{len(spec.words)} strings of the graph's own vocabulary" if spec.words else "random words") + (
        ", several per element" if spec.text else "")


class _GraphView:
    """What input ranges need of a graph, from its proto: each value's readers, its static shape
    (inferred value_info included) and small constants."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = list(graph.node)
        self.readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        self.constant_nodes: dict[str, onnx.NodeProto] = {}
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name:
                    self.readers.setdefault(name, []).append((node, k))
            if node.op_type == "Constant" and node.output:
                self.constant_nodes[node.output[0]] = node
        self.initializers = {t.name: t for t in graph.initializer}
        self.types = {v.name: v.type for v in list(graph.value_info) + list(graph.output) + list(graph.input)}

    def shape(self, name: str) -> Optional[tuple[Dim, ...]]:
        if name in self.initializers:
            return tuple(int(d) for d in self.initializers[name].dims)
        value_type = self.types.get(name)
        if value_type is None or not value_type.tensor_type.HasField("shape"):
            return None
        return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                     for d in value_type.tensor_type.shape.dim)

    def constant(self, name: str) -> Optional[np.ndarray]:
        from onnx import numpy_helper

        try:
            if name in self.initializers:
                return numpy_helper.to_array(self.initializers[name])
            node = self.constant_nodes.get(name)
            if node is not None:
                value = next((a for a in node.attribute if a.name == "value"), None)
                return None if value is None else numpy_helper.to_array(value.t)
        except Exception:  # noqa: BLE001 - external or odd data: no range from it
            return None
        return None


def _onnx_dtype_name(elem_type: int) -> str:
    if elem_type == onnx.TensorProto.BFLOAT16:
        return "bfloat16"
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # noqa: BLE001 - undefined or unknown element type
        return "float32"


# Ops that pass index values on unchanged (an index cast to int32 and unsqueezed is still an index).
_VALUE_PRESERVING = frozenset({"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand",
                               "Transpose"})
# com.microsoft EmbedLayerNormalization: input slot of the ids -> input slot of the table they index
_EMBED_TABLES = {0: 2, 1: 4, 7: 3}


def _range_from_onnx_consumers(spec: InputSpec, name: str, graph: _GraphView, depth: int = 0) -> None:
    is_int = spec.dtype.startswith(("int", "uint"))
    if depth == 0 and (is_int or spec.dtype == "bool"):
        _fill_by_name(spec)
    for node, index in graph.readers.get(name, ()):
        op = node.op_type
        if is_int and op in _VALUE_PRESERVING and index == 0 and depth < 4 and node.output and node.output[0]:
            _range_from_onnx_consumers(spec, node.output[0], graph, depth + 1)
            if spec.high is not None:
                return
            continue
        if is_int and op == "EmbedLayerNormalization" and index in _EMBED_TABLES:
            slot = _EMBED_TABLES[index]
            table = node.input[slot] if len(node.input) > slot and node.input[slot] else None
            _bound_by_dim(spec, None if table is None else graph.shape(table), 0,
                          f"ids of EmbedLayerNormalization {node.name!r}")
            return
        if is_int and op in ("Gather", "GatherElements", "ScatterElements", "Scatter") and index == 1:
            axis = next((int(a.i) for a in node.attribute if a.name == "axis"), 0)
            _bound_by_dim(spec, graph.shape(node.input[0]), axis, f"indices of {op} {node.name!r}")
            return
        if is_int and op == "GatherND" and index == 1:
            _bound_by_dim(spec, graph.shape(node.input[0]), 0, f"indices of GatherND {node.name!r}")
            return
        if is_int and op == "OneHot" and index == 0:
            depth_value = graph.constant(node.input[1]) if len(node.input) > 1 else None
            if depth_value is not None and depth_value.size:
                spec.low, spec.high, spec.why = 0, int(np.asarray(depth_value).reshape(-1)[0]), "indices of OneHot"
                return
        if not is_int and op == "Bernoulli" and index == 0:
            spec.low, spec.high, spec.why = 0.0, 1.0, "probabilities of Bernoulli"
            return
        if not is_int and op in ("Log", "Sqrt", "Reciprocal") and index == 0:
            spec.low, spec.high, spec.why = 0.01, 1.0, f"positive input of {op}"
            return


def _fill_by_name(spec: InputSpec) -> None:
    """Inputs whose valid values are not random by convention (Hugging Face and onnxruntime-genai
    naming): attention masks are all ones (no padding: every model accepts that), position ids
    count along the sequence."""
    name = spec.name.lower()
    if "mask" in name and (spec.dtype != "bool" or "attention_mask" in name):
        spec.fill, spec.why = "ones", "attention mask (all ones: no padding)"
    elif name.endswith("position_ids"):
        spec.fill, spec.why = "positions", "position ids (0, 1, 2, ... along the sequence)"


def _bound_by_dim(spec: InputSpec, shape: Optional[Sequence[Dim]], axis: int, why: str) -> None:
    shape = None if shape is None else list(shape)
    if shape and -len(shape) <= axis < len(shape) and isinstance(shape[axis], int) and shape[axis] > 0:
        spec.low, spec.high, spec.why = 0, shape[axis], f"{why} (axis size {shape[axis]})"
    else:
        spec.low, spec.high, spec.why = 0, 1, f"{why} (axis size unknown: index 0)"


_MX_DTYPES = {0: "float32", 1: "float64", 2: "float16", 3: "uint8", 4: "int32", 5: "int8", 6: "int64", 7: "bool"}


def specs_from_mxnet_json(
    symbol_json: "str | PathLike | Mapping[str, Any]",
    param_names: Sequence[str] = (),
    input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
) -> list[InputSpec]:
    """Specs for an MXNet symbol's data inputs (variables that are neither parameters nor labels).

    Reads the JSON only (no MXNet import). ``param_names`` are the keys of the params file
    without their ``arg:``/``aux:`` prefix; without them, names ending like MXNet parameters
    (``_weight``, ``_bias``, ``_gamma``, ...) count as parameters.
    """
    graph = _mx_graph(symbol_json)
    nodes = graph["nodes"]
    params = set(param_names)
    input_shapes = dict(input_shapes or {})
    used_as = _mx_variable_uses(nodes)
    labels = set(label_inputs(nodes, heads=graph.get("heads")))
    specs = []
    for i, node in enumerate(nodes):
        if node.get("op") != "null":
            continue
        name = node["name"]
        if name in params or (not params and is_mxnet_param_name(name)):
            continue
        if name in labels:
            continue  # a training label, not an inference input
        attrs = node.get("attrs") or node.get("attr") or node.get("param") or {}
        shape: Optional[tuple[Dim, ...]] = None
        if "__shape__" in attrs:
            try:
                dims = parse_tuple(attrs["__shape__"], stream=True)
                shape = None if dims is None else tuple(d if d > 0 else None for d in dims)
            except AttrParseError:
                shape = None
        if name in input_shapes:
            shape = tuple(int(d) for d in input_shapes[name])
        try:
            dtype = _MX_DTYPES.get(parse_int(attrs.get("__dtype__", "0"), stream=True), "float32")
        except AttrParseError:
            dtype = "float32"  # MXNet cannot read it either; the data input is float unless told
        spec = InputSpec(name, shape, dtype)
        _range_from_mxnet_consumers(spec, used_as.get(i, []))
        specs.append(spec)
    unknown = [n for n in input_shapes if n not in {s.name for s in specs}]
    if unknown:
        raise ShapeError(f"--input-shape names {', '.join(map(repr, unknown))}, not an input of the model "
                         f"(inputs: {', '.join(s.name for s in specs)})")
    return specs


def mxnet_input_specs(symbol_json: "str | PathLike | Mapping[str, Any]", shapes: Mapping[str, Sequence[int]],
                      dtypes: Mapping[str, Any]) -> list[InputSpec]:
    """Specs for exactly the inputs named in ``shapes`` (an exporter's input plan), with the value
    ranges their MXNet consumers need (indices of Embedding stay below ``input_dim``)."""
    nodes = _mx_graph(symbol_json)["nodes"]
    used_as = _mx_variable_uses(nodes)
    index = {node["name"]: i for i, node in enumerate(nodes) if node.get("op") == "null"}
    specs = []
    for name, shape in shapes.items():
        spec = InputSpec(name, tuple(int(d) for d in shape), np.dtype(dtypes.get(name, np.float32)).name)
        _range_from_mxnet_consumers(spec, used_as.get(index.get(name, -1), []))
        specs.append(spec)
    return specs


def _range_from_mxnet_consumers(spec: InputSpec, uses: Sequence[tuple[str, int, Mapping[str, Any]]]) -> None:
    for op, slot, op_attrs in uses:
        if op == "Embedding" and slot == 0 and "input_dim" in op_attrs:
            spec.low, spec.high, spec.why = 0, parse_int(op_attrs["input_dim"]), "indices of Embedding"
            spec.integral = True


_MX_PARAM_SUFFIXES = ("_weight", "_bias", "_gamma", "_beta", "_moving_mean", "_moving_var", "_running_mean",
                      "_running_var", "_alpha")


def is_mxnet_param_name(name: str) -> bool:
    return name.endswith(_MX_PARAM_SUFFIXES)


def _mx_graph(symbol_json: "str | PathLike | Mapping[str, Any]") -> Mapping[str, Any]:
    if isinstance(symbol_json, Mapping):
        return symbol_json
    text = str(symbol_json)
    if not text.lstrip().startswith("{"):
        path = Path(text)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ModelLoadError(f"cannot read symbol file ({exc.strerror or exc})", file=str(path)) from exc
    try:
        graph = json.loads(text)
    except ValueError as exc:
        raise ModelLoadError(f"not an MXNet symbol file (invalid JSON: {exc})",
                             file=None if text.lstrip().startswith("{") else str(symbol_json)) from exc
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise ModelLoadError("not an MXNet symbol file (no 'nodes' list)")
    return graph


def _mx_variable_uses(nodes: list[Mapping[str, Any]]) -> dict[int, list[tuple[str, int, Mapping[str, Any]]]]:
    uses: dict[int, list[tuple[str, int, Mapping[str, Any]]]] = {}
    for node in nodes:
        if node.get("op") == "null":
            continue
        attrs = node.get("attrs") or node.get("attr") or node.get("param") or {}
        for slot, entry in enumerate(node.get("inputs", [])):
            uses.setdefault(int(entry[0]), []).append((node["op"], slot, attrs))
    return uses


# --- random data ----------------------------------------------------------------------------
def random_inputs(specs: Sequence[InputSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Reproducible random arrays for ``specs`` (same seed, same arrays)."""
    rng = np.random.default_rng(seed)
    return {spec.name: random_array(spec, rng) for spec in specs}


def random_array(spec: InputSpec, rng: np.random.Generator) -> np.ndarray:
    shape = spec.concrete_shape()
    dtype = spec.dtype
    integral = spec.integral
    if spec.fill == "ones":
        return np.ones(shape, dtype=np.bool_ if dtype == "bool" else dtype)
    if spec.fill == "positions" and shape:
        return np.broadcast_to(np.arange(shape[-1]), shape).astype(dtype).copy()
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype == "object":
        return _random_strings(spec, shape, rng)
    if dtype.startswith(("int", "uint")) or integral:
        low = int(spec.low) if spec.low is not None else 0
        high = int(spec.high) if spec.high is not None else 10
        values = rng.integers(low, max(high, low + 1), size=shape)
        return values.astype(dtype)
    low = -1.0 if spec.low is None else float(spec.low)
    high = 1.0 if spec.high is None else float(spec.high)
    values = rng.uniform(low, high, size=shape)
    if dtype == "bfloat16":
        from .compare import BFLOAT16

        return values.astype(np.float32).astype(BFLOAT16)
    return values.astype(dtype)


def _random_strings(spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Strings for a string input: one vocabulary entry per element, or (``spec.text``) one to four
    words; about one in eight is a word the vocabulary lacks, so unknown values are checked too."""
    words = list(spec.words) or ["alpha", "beta", "gamma", "delta", "epsilon"]

    def word() -> str:
        return "zzunseen" if rng.random() < 0.125 else words[int(rng.integers(len(words)))]

    count = int(np.prod(shape)) if shape else 1
    values = [" ".join(word() for _ in range(int(rng.integers(1, 5)))) if spec.text else word() for _ in range(count)]
    out = np.empty(count, dtype=object)
    out[:] = values
    return out.reshape(shape)


# --- user data ------------------------------------------------------------------------------
def load_array_file(path: PathLike) -> "np.ndarray | dict[str, np.ndarray]":
    """A ``.npy`` array or the arrays of a ``.npz``, never unpickling anything."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError("no such file", file=str(path))
    try:
        data = np.load(str(p), allow_pickle=False)
    except ValueError as exc:
        raise ModelLoadError(f"cannot read array file ({' '.join(str(exc).split())[:200]}); object arrays are "
                             "refused", file=str(path)) from exc
    except OSError as exc:
        raise ModelLoadError(f"not a .npy/.npz file ({exc})", file=str(path)) from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            return {k: data[k] for k in data.files}
    return data


def load_image(path: PathLike, shape: Sequence[int], options: Optional[ImageOptions] = None) -> np.ndarray:
    """An image file as a float32 4-D input of ``shape`` (decoded with MXNet when it is installed)."""
    options = options or ImageOptions()
    if len(shape) != 4:
        raise ShapeError(f"an image can only feed a 4-D input; this input has shape {tuple(shape)}")
    layout = options.layout.upper()
    if layout not in ("NCHW", "NHWC"):
        raise ShapeError(f"image layout must be NCHW or NHWC, not {options.layout!r}")
    n, c, h, w = (shape[0], shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[0], shape[3], shape[1], shape[2])
    if c not in (1, 3):
        raise ShapeError(f"an image input needs 1 or 3 channels; shape {tuple(shape)} in {layout} has {c}")
    order = options.channel_order.upper()
    if order not in ("RGB", "BGR"):
        raise ShapeError(f"channel order must be RGB or BGR, not {options.channel_order!r}")
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError("no such file", file=str(path))
    try:
        from mx2onnx_patches.mxnet_import import MXNetMissingError, import_mxnet

        mx = import_mxnet()
    except (ImportError, MXNetMissingError) as exc:
        raise ModelLoadError("reading image files needs MXNet (mx.image.imdecode), which is not installed; "
                             "pass the input as .npy or .npz instead", file=str(path)) from exc
    try:
        img = mx.image.imdecode(p.read_bytes(), flag=1 if c == 3 else 0, to_rgb=True)
        img = mx.image.imresize(img, int(w), int(h))
        pixels = img.asnumpy().astype(np.float32)  # H, W, C in RGB (or H, W, 1)
    except Exception as exc:
        raise ModelLoadError(f"cannot decode image ({' '.join(str(exc).split())[:200]})", file=str(path)) from exc
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if c == 3 and order == "BGR":
        pixels = pixels[:, :, ::-1]
    mean = np.asarray(_per_channel(options.mean, c, "mean"), dtype=np.float32)
    std = np.asarray(_per_channel(options.std, c, "std"), dtype=np.float32)
    if np.any(std == 0):
        raise ShapeError("--std values must be non-zero")
    pixels = (pixels - mean) / std
    if layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    batch = np.repeat(pixels[None], int(n), axis=0)
    return np.ascontiguousarray(batch, dtype=np.float32)


def _per_channel(values: Sequence[float], channels: int, what: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ShapeError(f"--{what} needs 1 or {channels} values, got {len(values)}")
    return values


def _check_against_spec(spec: InputSpec, array: np.ndarray, source: str) -> np.ndarray:
    if spec.shape is not None:
        ok = len(spec.shape) == array.ndim and all(
            not isinstance(d, int) or d < 0 or d == s for d, s in zip(spec.shape, array.shape))
        if not ok:
            shown = ",".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in spec.shape)
            raise ShapeError(f"input {spec.name!r} from {source} has shape {tuple(array.shape)}; the model expects ({shown})")
    if array.dtype.name != spec.dtype:
        if spec.dtype == "bfloat16" or not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
            raise ShapeError(f"input {spec.name!r} from {source} has dtype {array.dtype}; the model expects {spec.dtype}")
        log.info("input %s from %s: %s cast to %s", spec.name, source, array.dtype, spec.dtype)
        array = array.astype(spec.dtype)
    return array


def prepare_inputs(
    specs: Sequence[InputSpec],
    sources: Sequence[str] = (),
    *,
    seed: int = 0,
    image: Optional[ImageOptions] = None,
) -> PreparedInputs:
    """Inputs from ``sources`` (``[NAME=]FILE`` items, see :func:`read_inputs`), random for the rest."""
    arrays, origin = read_inputs(specs, sources, image=image)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:  # the model's order
        if spec.name in arrays:
            out[spec.name] = arrays[spec.name]
        else:
            out[spec.name] = random_array(spec, rng)
            origin[spec.name] = f"random (seed {seed}" + (f", {spec.why}" if spec.why else "") + ")"
    return PreparedInputs(out, origin)


def read_inputs(specs: Sequence[InputSpec], sources: Sequence[str] = (), *,
                image: Optional[ImageOptions] = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(arrays, origin)`` of the inputs ``sources`` give, each checked against its spec.

    ``FILE.npz`` gives inputs by their names; ``NAME=FILE.npy`` one input (``NAME=`` may be left
    out when the model has one input); ``NAME=IMAGE`` an image (``NAME=`` may be left out: the
    first 4-D input takes it).
    """
    by_name = {s.name: s for s in specs}
    arrays: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for item in sources:
        name, sep, file = item.partition("=")
        if not sep or os.path.exists(item):
            name, file = "", item
        if name and name not in by_name:
            raise ShapeError(f"--input {item!r}: {name!r} is not an input of the model (inputs: {', '.join(by_name)})")
        suffix = Path(file).suffix.lower()
        if suffix == ".npz":
            loaded = load_array_file(file)
            assert isinstance(loaded, dict)
            picked = {k: v for k, v in loaded.items() if (k == name if name else k in by_name)}
            if not picked:
                raise ShapeError(f"--input {item!r}: the archive holds {', '.join(loaded) or 'nothing'}, "
                                 f"none of the model inputs ({', '.join(by_name)})")
            for k, v in picked.items():
                arrays[k] = _check_against_spec(by_name[k], v, file)
                origin[k] = f"file {file}"
        elif suffix == ".npy":
            target = name or _only_input(specs, item)
            loaded = load_array_file(file)
            arrays[target] = _check_against_spec(by_name[target], np.asarray(loaded), file)
            origin[target] = f"file {file}"
        elif suffix in IMAGE_SUFFIXES:
            target = name or next((s.name for s in specs if s.shape is not None and len(s.shape) == 4), "")
            if not target:
                raise ShapeError(f"--input {item!r}: the model has no 4-D input for an image")
            shape = by_name[target].concrete_shape()
            arrays[target] = _check_against_spec(by_name[target], load_image(file, shape, image), file)
            origin[target] = f"image {file}"
        else:
            raise ModelLoadError(f"unknown input file type {suffix or '(none)'!r}: use .npy, .npz or an image "
                                 f"({', '.join(IMAGE_SUFFIXES)})", file=file)
    return arrays, origin


def _only_input(specs: Sequence[InputSpec], item: str) -> str:
    if len(specs) != 1:
        raise ShapeError(f"--input {item!r}: the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); "
                         f"write NAME={item}")
    return specs[0].name
