"""Build a ``torch.fx.GraphModule`` straight from an ONNX graph (no tracing).

Every ONNX value maps to a *handle*: an ``fx.Node`` when it is computed at run time, a
``torch.Tensor`` when it is known at conversion time (initializers, Constant outputs and anything
computed only from those), a Python list for ONNX sequences, or ``None`` for an omitted
optional input. Converters emit code through :class:`NodeContext`; a call whose arguments are
all known runs immediately, so static shape arithmetic is folded at conversion time for free and
never reaches the forward pass.

Names: a float initializer becomes a parameter named after it (:func:`naming.sanitize`;
``gm.onnx_param_names`` maps back). With ``keep_initializers`` (``convert(..., fuse=False)``)
that holds for every float initializer: a tensor folded from one (a PReLU slope's Reshape, an
RNN vector's slices) is not stored under a new name; the forward recomputes it from the
parameter with the calls that folded it (:meth:`GraphBuilder.note_derived`), so the module's
parameters are the ONNX initializers, names and values unchanged, and gradients reach them.
Otherwise a folded reshape or transpose of a float initializer (a view of all its elements)
that is stored in its place takes the initializer's name; ``gm.onnx_param_permuted`` and
``gm.onnx_param_reshaped`` record how to get it back (:func:`naming.onnx_initializer`).
"""
from __future__ import annotations

import itertools
import logging
import operator
import warnings
from collections import Counter
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
import torch.fx as fx

from common import ir as cir
from common.errors import ConversionError, ConversionFailure, ModelLoadError, UnsupportedOpError, location
from common.ir import onnx_ir as ir

from . import registry
from .dtypes import torch_dtype
from .graph_upkeep import drop_dead_nodes
from .naming import sanitize
from .runtime import strings as rt_strings

log = logging.getLogger(__name__)

Handle = Union[fx.Node, torch.Tensor, np.ndarray, list, None]  # np.ndarray: a known string tensor
_RUNTIME_PREFIX = __name__.rsplit(".", 1)[0] + ".runtime."
_CONV2D = (torch.conv2d, torch.nn.functional.conv2d, torch.conv_transpose2d, torch.nn.functional.conv_transpose2d)
_REQUIRED = object()


def is_dynamic(obj: Any) -> bool:
    """True when ``obj`` (or anything inside it) is computed at run time."""
    if isinstance(obj, fx.Node):
        return True
    if isinstance(obj, (list, tuple)):
        return any(is_dynamic(o) for o in obj)
    if isinstance(obj, dict):
        return any(is_dynamic(o) for o in obj.values())
    if isinstance(obj, slice):  # an index whose bounds are run-time sizes
        return any(is_dynamic(o) for o in (obj.start, obj.stop, obj.step))
    return False


_ML_DTYPES_AS_TORCH = {  # numpy (ml_dtypes) name -> (same-width integer view, torch dtype)
    "bfloat16": (np.int16, torch.bfloat16),
    "float8_e4m3fn": (np.uint8, torch.float8_e4m3fn),
    "float8_e4m3fnuz": (np.uint8, torch.float8_e4m3fnuz),
    "float8_e5m2": (np.uint8, torch.float8_e5m2),
    "float8_e5m2fnuz": (np.uint8, torch.float8_e5m2fnuz),
}


_ADOPT_MIN_BYTES = 1 << 16


def numpy_to_torch(arr: np.ndarray) -> torch.Tensor:
    """Tensor sharing memory with ``arr`` where possible (weights are not copied twice)."""
    arr = np.asarray(arr)
    if arr.dtype == object or arr.dtype.kind in "SUO":
        raise ConversionFailure("string tensors have no PyTorch equivalent")
    if (not arr.flags.writeable and arr.flags.c_contiguous and arr.nbytes >= _ADOPT_MIN_BYTES
            and _views_private_bytes(arr)):
        # protobuf returns a fresh ``bytes`` for every read of raw_data: the tensor may own it
        # instead of copying it once more (half the time and peak memory for big models).
        # Small ones are copied: cheaper than silencing the warning (catch_warnings resets
        # the warning filters' cache each time).
        ml_dtype = _ML_DTYPES_AS_TORCH.get(arr.dtype.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "non-writable array": nobody else holds it
            try:
                tensor = torch.from_numpy(arr.view(ml_dtype[0]) if ml_dtype else arr)
            except TypeError:
                tensor = None
        if tensor is not None:
            return tensor.view(ml_dtype[1]) if ml_dtype else tensor
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        # np.array, not np.ascontiguousarray: the latter turns a 0-d array into shape (1,)
        arr = np.array(arr, order="C", copy=True)
    ml_dtype = _ML_DTYPES_AS_TORCH.get(arr.dtype.name)
    if ml_dtype is not None:  # ml_dtypes arrays (bfloat16, float8): reinterpret the bits
        return torch.from_numpy(arr.view(ml_dtype[0])).view(ml_dtype[1])
    try:
        return torch.from_numpy(arr)
    except TypeError as exc:
        raise ConversionFailure(f"dtype {arr.dtype} has no PyTorch equivalent") from exc


def _permutation_to_contiguous(t: torch.Tensor) -> Optional[tuple[int, ...]]:
    """``perm`` with ``t.permute(perm)`` contiguous (a transposed view of a dense tensor), or None."""
    if t.is_contiguous():
        return tuple(range(t.dim()))
    perm = tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d), -t.size(d))))
    return perm if t.permute(perm).is_contiguous() else None


def _views_private_bytes(arr: np.ndarray) -> bool:
    """True when ``arr`` is a view of a ``bytes`` object (as ``np.frombuffer(proto.raw_data)`` is)."""
    base = arr.base
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, bytes)


def is_string_array(obj: Any) -> bool:
    """True for a numpy array of strings: how a string tensor known at conversion time is held."""
    return isinstance(obj, np.ndarray) and (obj.dtype == object or obj.dtype.kind in "SU")


def numpy_to_handle(arr: np.ndarray) -> "torch.Tensor | np.ndarray":
    """Like :func:`numpy_to_torch`, but a string array stays a numpy object array of ``str``.

    torch has no string tensor; string values travel through converted modules as numpy object
    arrays (the form ``runtime/strings.py`` works on).
    """
    arr = np.asarray(arr)
    if is_string_array(arr):
        return rt_strings.to_string_array(arr)
    return numpy_to_torch(arr)


class GraphBuilder:
    """Converts one ONNX graph (the model's, or an If/Loop/Scan body) into a GraphModule."""

    def __init__(
        self,
        opsets: dict[str, int],
        *,
        file: str = "",
        parent: Optional["GraphBuilder"] = None,
        value_shapes: Optional[dict[str, tuple]] = None,
        trainable: bool = False,
        keep_initializers: bool = False,
        constants: Iterable[str] = (),
    ) -> None:
        self.opsets = dict(opsets)
        self.file = file
        self.parent = parent
        # Trainable conversion (:func:`onnx2x.torch.convert`): float initializers become
        # parameters that require grad, nothing computed from them is folded, and converters
        # emit train()/eval()-dependent code (BatchNormalization statistics, Dropout).
        self.trainable = parent.trainable if parent is not None else trainable
        # Float initializers an exporter made (:data:`common.metadata.CONSTANT_INITIALIZERS_KEY`):
        # constants even in a trainable conversion (buffers, folded like any constant).
        self.constants: frozenset[str] = parent.constants if parent is not None else frozenset(constants)
        self._stat_ids: set[int] = set()  # initializers that are running statistics: buffers
        self._attr_names: dict[int, str] = {}  # module attribute names chosen by a converter
        self._initializer_value: dict[int, ir.Value] = {}  # tensor id -> the initializer it came from
        self._training_node: Optional[fx.Node] = None
        self.root = torch.nn.Module()
        self.graph = fx.Graph()
        self.env: dict[ir.Value, Handle] = {}
        self.captures: list[tuple[ir.Value, Handle]] = []  # outer values a subgraph reads
        self._attr_cache: dict[int, fx.Node] = {}
        self._keepalive: list[torch.Tensor] = []
        self.param_names: dict[str, str] = {}  # module attribute -> ONNX initializer name
        self.value_to_fx: dict[str, str] = {}  # ONNX tensor name -> fx node name
        self._initializer_of: dict[int, str] = {}
        self._submodule_count = 0
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        # keep_initializers: how each tensor known from a float initializer was folded (by id)
        self.keep_initializers = keep_initializers
        self._recipes: dict[int, tuple] = {}
        # otherwise: pure reshapes of a float initializer (by id) -> (its name, its shape)
        self._views: dict[int, tuple[str, tuple[int, ...]]] = {}
        self._view_attrs: dict[str, tuple[str, tuple[int, ...]]] = {}
        # ONNX name -> how its stored tensor gives it back: .permute(permuted).reshape(reshaped)
        self.reshaped: dict[str, tuple[int, ...]] = {}
        self.permuted: dict[str, tuple[int, ...]] = {}

    # --- values --------------------------------------------------------------------------------
    def lookup(self, value: ir.Value) -> Handle:
        if value in self.env:
            return self.env[value]
        if self.parent is not None:
            outer = self.parent.lookup(value)
            # A weight of an outer graph is passed in like a run-time value when training: a
            # copy in the body's module would be a constant that no gradient reaches.
            if not is_dynamic(outer) and not (self.trainable and self.parent.is_weight(outer)):
                self.env[value] = outer
                return outer
            ph = self._capture_placeholder(value)
            self.captures.append((value, outer))
            self.env[value] = ph
            return ph
        raise ModelLoadError(f"value {value.name!r} is used but never defined", file=self.file or None)

    def _capture_placeholder(self, value: ir.Value) -> fx.Node:
        first_real = next((n for n in self.graph.nodes if n.op != "placeholder"), None)
        if first_real is None:
            node = self.graph.placeholder(sanitize(value.name, "captured"))
        else:
            with self.graph.inserting_before(first_real):
                node = self.graph.placeholder(sanitize(value.name, "captured"))
        node.meta["onnx_name"] = value.name
        return node

    def add_placeholder(self, value: ir.Value) -> fx.Node:
        node = self.graph.placeholder(sanitize(value.name, "input"))
        node.meta["onnx_name"] = value.name
        self.value_to_fx[value.name] = node.name
        self.env[value] = node
        self.input_names.append(value.name)
        return node

    def add_initializer(self, value: ir.Value) -> None:
        arr = cir.constant_array(value)
        if arr is None:
            raise ConversionFailure(f"initializer {value.name!r} has no data", file=self.file or None)
        tensor = numpy_to_handle(arr)
        self._initializer_of[id(tensor)] = value.name
        self._initializer_value[id(tensor)] = value
        self._keepalive.append(tensor)
        self.env[value] = tensor

    def release_tensors(self) -> None:
        """Drop the builder's references to known tensors (the module keeps those it uses).

        Why: the builder and the IR graph form reference cycles that only the garbage collector
        breaks; until it runs, a weight that a later pass replaces (folded, relaid out) would
        stay alive beside its replacement: up to a second copy of the weights.
        """
        self.env.clear()
        self._keepalive.clear()
        self._attr_cache.clear()
        self._initializer_of.clear()
        self._stat_ids.clear()
        self._attr_names.clear()
        self._initializer_value.clear()
        self._recipes.clear()
        self._views.clear()
        for table in (self.root._parameters, self.root._buffers):  # ``finish`` copied them to the module
            table.clear()

    # --- keep_initializers: tensors folded from float initializers are recomputed ---------------
    def _is_parameter(self, obj: Any) -> bool:
        return isinstance(obj, torch.Tensor) and obj.dtype.is_floating_point and id(obj) in self._initializer_of

    def _derives(self, obj: Any) -> bool:
        """True when ``obj`` holds a float initializer or a value folded from one."""
        if isinstance(obj, torch.Tensor):
            return id(obj) in self._recipes or self._is_parameter(obj)
        if isinstance(obj, (list, tuple)):
            return id(obj) in self._recipes or any(self._derives(o) for o in obj)
        if isinstance(obj, dict):
            return any(self._derives(o) for o in obj.values())
        if isinstance(obj, slice):
            return any(self._derives(o) for o in (obj.start, obj.stop, obj.step))
        return False

    def note_derived(self, result: Any, recipe: tuple) -> None:
        """Remember how a folded ``result`` was computed when it derives from a float initializer.

        ``recipe``: ``("call", target, args, kwargs)`` or ``("method", name, obj, args, kwargs)``.
        Only with ``keep_initializers``; :meth:`materialize` then replays it in the forward.
        """
        if not self.keep_initializers:
            self._note_reshape(result, recipe)
            return
        if not isinstance(result, (torch.Tensor, list, tuple)):
            return
        if not self._derives(recipe[2:]):
            return
        self._recipes[id(result)] = recipe
        self._keepalive.append(result)  # ids stay unique while the recipe may be replayed
        if isinstance(result, (list, tuple)):
            for i, item in enumerate(result):
                if isinstance(item, torch.Tensor):
                    self._recipes[id(item)] = ("call", operator.getitem, (result, i), {})
                    self._keepalive.append(item)

    def _note_reshape(self, result: Any, recipe: tuple) -> None:
        """Remember ``result`` when it holds exactly the elements of a float initializer (or of
        such a tensor), reshaped and transposed: a view of all its bytes, in another order."""
        if (not isinstance(result, torch.Tensor) or not result.dtype.is_floating_point
                or _permutation_to_contiguous(result) is None):
            return
        sources = (recipe[2],) + tuple(recipe[3]) if recipe[0] == "method" else tuple(recipe[2])
        for src in sources:
            if not isinstance(src, torch.Tensor) or src.numel() != result.numel():
                continue
            root = self._views.get(id(src))
            if root is None and self._is_parameter(src) and src.is_contiguous():
                root = (self._initializer_of[id(src)], tuple(src.shape))
            if (root is not None and src.dtype == result.dtype and src.storage_offset() == result.storage_offset()
                    and src.untyped_storage().data_ptr() == result.untyped_storage().data_ptr()):
                self._views[id(result)] = root
                self._keepalive.append(result)
                return

    def _name_reshapes(self) -> None:
        """A stored reshape/transpose of an initializer that is not stored itself takes its name;
        ``permuted`` and ``reshaped`` record how to get the initializer back."""
        claimed = set(self.param_names.values())
        roots = Counter(root for attr, (root, _) in self._view_attrs.items() if attr in self.param_names)
        readers: dict[str, list[fx.Node]] = {}
        if self._view_attrs:
            for node in self.graph.nodes:
                if node.op == "get_attr":
                    readers.setdefault(node.target, []).append(node)
        for attr, (onnx_name, shape) in self._view_attrs.items():
            new = sanitize(onnx_name, "const")
            if attr not in self.param_names or onnx_name in claimed or roots[onnx_name] != 1:
                continue
            if attr != new:
                if hasattr(self.root, new) or new in self.root._modules:
                    continue
                table = self.root._parameters if attr in self.root._parameters else self.root._buffers
                table[new] = table.pop(attr)
                for node in readers.get(attr, ()):
                    node.target = new
                    node._rename(new)
                del self.param_names[attr]
            self.param_names[new] = onnx_name
            stored = getattr(self.root, new)
            perm = _permutation_to_contiguous(stored)
            if perm is not None and perm != tuple(range(stored.dim())):
                self.permuted[onnx_name] = perm
            if tuple(stored.shape) != shape or onnx_name in self.permuted:
                self.reshaped[onnx_name] = shape

    def _replay(self, value: Any, hint: str) -> fx.Node:
        key = id(value)
        if key in self._attr_cache:
            return self._attr_cache[key]
        recipe = self._recipes[key]
        if recipe[0] == "call":
            _, target, args, kwargs = recipe
            node = self.graph.call_function(target, self.lift(tuple(args), hint),
                                            self.lift(dict(kwargs), hint))
            if getattr(target, "__module__", "").startswith(_RUNTIME_PREFIX):
                node.meta["is_wrapped"] = True
        else:
            _, name, obj, args, kwargs = recipe
            node = self.graph.call_method(name, self.lift((obj,) + tuple(args), hint),
                                          self.lift(dict(kwargs), hint))
        self._attr_cache[key] = node
        return node

    def materialize(self, tensor: torch.Tensor, hint: str = "const") -> fx.Node:
        """A ``get_attr`` node for a known tensor (parameter if it is an initializer of float type);
        with ``keep_initializers``, a tensor folded from one is recomputed from it instead."""
        key = id(tensor)
        if key in self._attr_cache:
            return self._attr_cache[key]
        if key in self._recipes:
            return self._replay(tensor, hint)
        onnx_name = self._initializer_of.get(key)
        base = sanitize(self._attr_names.get(key) or onnx_name or hint, "const")
        name = base
        i = 1
        while hasattr(self.root, name) or name in self.root._modules:
            i += 1
            name = f"{base}_{i}"
        if key in self._views:  # named after its initializer at the end, if that is not stored itself
            self._view_attrs[name] = self._views[key]
        if ((onnx_name is not None or key in self._views) and tensor.dtype.is_floating_point
                and key not in self._stat_ids and not (self.trainable and onnx_name in self.constants)):
            self.root.register_parameter(name, torch.nn.Parameter(tensor, requires_grad=self.trainable))
        else:
            self.root.register_buffer(name, tensor)
        self.param_names[name] = onnx_name or hint
        node = self.graph.get_attr(name)
        self._attr_cache[key] = node
        self._keepalive.append(tensor)
        return node

    def is_weight(self, obj: Any) -> bool:
        """True when ``obj`` (or a tensor inside it) is a float initializer of this graph.

        Trainable conversion does not fold calls on weights: the result would be a new unnamed
        constant, and the weight would no longer be a parameter that learns.
        """
        if isinstance(obj, torch.Tensor):
            return (obj.dtype.is_floating_point and id(obj) in self._initializer_of
                    and self._initializer_of[id(obj)] not in self.constants)
        if isinstance(obj, (list, tuple)):
            return any(self.is_weight(o) for o in obj)
        if isinstance(obj, dict):
            return any(self.is_weight(o) for o in obj.values())
        return False

    def running_statistic(self, value: ir.Value, name: str) -> Optional[torch.Tensor]:
        """The buffer a BatchNormalization updates in ``train()`` for its input ``value``.

        The initializer itself (a buffer named after it) when the node reads it directly and
        nothing else does; otherwise a private copy, so that the update changes nothing else
        (exporters merge equal initializers: torch.onnx.export gives fresh BatchNorm layers one
        tensor of ones for every weight and running variance, read directly or through
        Identity nodes). The copy is named after ``value`` when that is a name of its own (the
        exporter's ``bn.running_mean``), else ``name``. None when ``value`` is not known to
        come from an initializer of this graph.
        """
        tensor = self.env.get(value)
        if not isinstance(tensor, torch.Tensor) or id(tensor) not in self._initializer_of:
            return None
        origin = self._initializer_value.get(id(tensor))
        if (origin is value and len(value.uses()) == 1 and not value.is_graph_output()
                and id(tensor) not in self._attr_cache):
            self._stat_ids.add(id(tensor))
            return tensor
        copy = tensor.detach().clone()
        self._initializer_of[id(copy)] = value.name
        self._attr_names[id(copy)] = name if origin is value else value.name
        self._stat_ids.add(id(copy))
        self._keepalive.append(copy)
        return copy

    def training_flag(self) -> fx.Node:
        """The module's ``self.training`` (one node per graph): what train()/eval() switches."""
        if self._training_node is None:
            self._training_node = self.graph.get_attr("training")
        return self._training_node

    def materialize_strings(self, arr: np.ndarray, hint: str = "const") -> fx.Node:
        """A node rebuilding a known string array from literals (saved models keep it as source)."""
        key = id(arr)
        if key not in self._attr_cache:
            node = self.graph.call_function(rt_strings.string_constant,
                                            (tuple(str(v) for v in arr.reshape(-1)), tuple(arr.shape)))
            node.meta["is_wrapped"] = True
            node._rename(sanitize(self._initializer_of.get(key) or hint, "const"))
            self._attr_cache[key] = node
            self._keepalive.append(arr)
        return self._attr_cache[key]

    def lift(self, obj: Any, hint: str) -> Any:
        """Replace known tensors (and string arrays) inside call arguments by graph nodes; with
        ``keep_initializers``, values folded from initializers by the calls that made them."""
        if isinstance(obj, (list, tuple)) and id(obj) in self._recipes:
            return self._replay(obj, hint)
        if isinstance(obj, torch.Tensor):
            return self.materialize(obj, hint)
        if is_string_array(obj):
            return self.materialize_strings(obj, hint)
        if isinstance(obj, list):
            return [self.lift(o, hint) for o in obj]
        if isinstance(obj, tuple):
            return tuple(self.lift(o, hint) for o in obj)
        if isinstance(obj, dict):
            return {k: self.lift(v, hint) for k, v in obj.items()}
        if isinstance(obj, slice):
            return slice(self.lift(obj.start, hint), self.lift(obj.stop, hint), self.lift(obj.step, hint))
        return obj

    def add_submodule(self, module: torch.nn.Module, hint: str) -> str:
        self._submodule_count += 1
        name = f"{sanitize(hint, 'sub')}_{self._submodule_count}"
        self.root.add_module(name, module)
        return name

    # --- conversion ----------------------------------------------------------------------------
    def convert_graph(self, graph: ir.Graph, *, formal_inputs: bool = True) -> None:
        """Convert ``graph``'s inputs, initializers and nodes into this builder's fx graph."""
        for value in graph.initializers.values():
            self.add_initializer(value)
        if formal_inputs:
            for value in graph.inputs:
                if value in self.env:  # an input with a default initializer: treated as constant
                    continue
                self.add_placeholder(value)
        for node in cir.topological_nodes(graph):
            self.convert_node(node)

    def convert_node(self, node: ir.Node) -> None:
        domain = node.domain or ""
        opset = self.opsets.get(domain if domain not in ("ai.onnx",) else "", None)
        if opset is None:
            opset = self.opsets.get("ai.onnx", 1) if domain in ("", "ai.onnx") else 1
        label = node.name or (node.outputs[0].name if node.outputs else "")
        try:
            conv = registry.lookup(node.op_type, opset, domain=domain, node_name=label)
            ctx = NodeContext(self, node, opset, conv.foldable)
            before = len(self.graph.nodes)
            result = conv.fn(ctx)
            self._bind_outputs(node, result, before)
        except ConversionError as exc:
            exc.with_context(file=self.file or None, node=label, op_type=node.op_type)
            raise
        except Exception as exc:
            raise ConversionFailure(
                f"conversion failed: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}",
                file=self.file or None, node=label, op_type=node.op_type,
            ) from exc

    def _bind_outputs(self, node: ir.Node, result: Any, nodes_before: int) -> None:
        if isinstance(result, tuple):
            results = list(result)
        elif isinstance(result, list) and len(node.outputs) > 1:
            results = result
        else:
            results = [result]
        added = len(self.graph.nodes) - nodes_before  # the last ``added`` nodes (not a copy of the whole list)
        fresh = set(itertools.islice(reversed(self.graph.nodes), added)) if added > 0 else set()
        for j, value in enumerate(node.outputs):
            handle = results[j] if j < len(results) else None
            if not value.name:
                continue
            self.env[value] = handle
            if isinstance(handle, fx.Node):
                if handle in fresh and "onnx_name" not in handle.meta:
                    handle._rename(sanitize(value.name))
                    handle.meta["onnx_name"] = value.name
                self.value_to_fx[value.name] = handle.name

    def finish(self, outputs: Sequence[ir.Value], *, as_tuple: Optional[bool] = None,
               channels_last: bool = True, generate_code: bool = True) -> fx.GraphModule:
        """Emit the output node and build the GraphModule (single output unwrapped by default).

        ``channels_last=False`` leaves convolution weights as they are (a later pass lays them out).
        ``generate_code=False``: the module's ``forward`` is not generated; the caller edits the
        graph and must call ``gm.recompile()`` before the module runs (one code generation instead
        of two: each costs 15-25 ms on DenseNet-121's 900 nodes, half the time of reading its weights).
        """
        handles = []
        for value in outputs:
            self.output_names.append(value.name)
            handles.append(self.lift(self.lookup(value), value.name))
        if as_tuple is None:
            as_tuple = len(handles) != 1
        self.graph.output(tuple(handles) if as_tuple else handles[0])
        drop_dead_nodes(self.graph)
        self._drop_unused_attrs()
        self._name_reshapes()
        if channels_last:
            self._conv_weights_channels_last()
        if generate_code:
            gm = fx.GraphModule(self.root, self.graph, class_name="ConvertedModel")
        else:
            gm = module_awaiting_code(self.root, self.graph, class_name="ConvertedModel")
        gm.onnx_input_names = list(self.input_names)
        gm.onnx_output_names = list(self.output_names)
        gm.onnx_param_names = dict(self.param_names)
        gm.onnx_param_reshaped = dict(self.reshaped)
        gm.onnx_param_permuted = dict(self.permuted)
        live = {n.name for n in self.graph.nodes}
        gm.onnx_value_to_fx = {k: v for k, v in self.value_to_fx.items() if v in live}
        return gm

    def _conv_weights_channels_last(self) -> None:
        channels_last_conv_weights(self.root, self.graph)

    def _drop_unused_attrs(self) -> None:
        used = {n.target for n in self.graph.nodes if n.op in ("get_attr", "call_module")}
        for name in list(self.root._parameters):
            if name not in used:
                del self.root._parameters[name]
                self.param_names.pop(name, None)
        for name in list(self.root._buffers):
            if name not in used:
                del self.root._buffers[name]
                self.param_names.pop(name, None)


def module_awaiting_code(root: torch.nn.Module, graph: fx.Graph, class_name: str) -> fx.GraphModule:
    """``fx.GraphModule(root, graph, class_name)`` without generating ``forward`` from ``graph``: the
    module holds ``root``'s attributes that ``graph`` reads and owns ``graph``, and runs only after
    ``recompile()``."""
    placeholder = fx.Graph()
    placeholder.output(None)
    gm = fx.GraphModule(root, placeholder, class_name=class_name)  # reads no attribute: copies none
    for node in graph.nodes:
        if node.op in ("get_attr", "call_module"):
            fx.graph_module._copy_attr(root, gm, node.target)
    gm._graph = graph  # what the ``graph`` setter does, less its recompile()
    graph.owning_module = gm
    return gm


def channels_last_conv_weights(root: torch.nn.Module, graph: fx.Graph, targets: Iterable[Callable] = _CONV2D,
                               max_bytes: Optional[int] = None) -> None:
    """Store constant 2-D (transposed) convolution weights channels-last (values unchanged, layout only).

    Why: on CPU, PyTorch's NCHW max-pooling and stem/1x1 convolutions are several times
    slower than their channels-last kernels (max_pool2d 3x3/2 on 64x112x112: 6.3 ms NCHW vs
    0.44 ms channels-last), and so are transposed convolutions (128 -> 128, 4x4/2 on 64x64:
    55 ms against 27 ms). A channels-last weight makes ``conv2d`` return channels-last
    activations, which every later op accepts, so the whole network runs in that layout.
    ``targets``: the call targets whose second argument is such a weight; ``max_bytes``: leave
    larger weights as they are.
    """
    targets = tuple(targets)
    for node in graph.nodes:
        if node.op != "call_function" or node.target not in targets or len(node.args) < 2:
            continue
        weight = node.args[1]
        if not (isinstance(weight, fx.Node) and weight.op == "get_attr"):
            continue
        name = weight.target
        tensor = root._parameters.get(name)
        if tensor is None:
            tensor = root._buffers.get(name)
        if (tensor is None or tensor.dim() != 4 or not tensor.dtype.is_floating_point
                or tensor.device.type != "cpu" or tensor.is_contiguous(memory_format=torch.channels_last)
                or (max_bytes is not None and tensor.numel() * tensor.element_size() > max_bytes)):
            continue
        relaid = tensor.detach().contiguous(memory_format=torch.channels_last)
        if name in root._parameters:
            root._parameters[name] = torch.nn.Parameter(relaid, requires_grad=tensor.requires_grad)
        else:
            root._buffers[name] = relaid


class NodeContext:
    """What a converter sees of one ONNX node, and how it emits PyTorch code."""

    def __init__(self, builder: GraphBuilder, node: ir.Node, opset: int, foldable: bool = True) -> None:
        self.builder = builder
        self.node = node
        self.opset = opset
        self.op_type = node.op_type
        self.domain = node.domain or ""
        self.name = node.name or (node.outputs[0].name if node.outputs else node.op_type)
        self.fold = foldable
        self._attrs = cir.attributes(node)

    # --- attributes ----------------------------------------------------------------------------
    def attr(self, name: str, default: Any = _REQUIRED) -> Any:
        if name in self._attrs:
            return self._attrs[name]
        if default is _REQUIRED:
            raise ConversionFailure(f"required attribute {name!r} is missing")
        return default

    def is_string(self, i: int) -> bool:
        """Input ``i`` is a string tensor (declared STRING, or a known numpy string array): such
        values are numpy object arrays at run time, which torch functions do not take."""
        if not self.has_input(i):
            return False
        dtype = self.node.inputs[i].dtype
        return (dtype is not None and dtype.name == "STRING") or is_string_array(self.input(i))

    def named(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        """``tensor``, stored on the module as ``name`` (made unique) when it becomes an attribute,
        instead of after the node's output: constant tables read better as ``tree_split``."""
        self.builder._attr_names.setdefault(id(tensor), name)
        return tensor

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    # --- inputs --------------------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return len(self.node.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.node.outputs)

    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and self.node.inputs[i] is not None and bool(self.node.inputs[i].name)

    def input(self, i: int) -> Handle:
        """Handle of input ``i`` (None when omitted)."""
        if not self.has_input(i):
            return None
        return self.builder.lookup(self.node.inputs[i])

    @property
    def inputs(self) -> list[Handle]:
        return [self.input(i) for i in range(self.num_inputs)]

    def const(self, i: int) -> Optional[np.ndarray]:
        """Input ``i`` as numpy when it is known at conversion time, else None."""
        h = self.input(i)
        if isinstance(h, torch.Tensor):
            return h.detach().cpu().numpy() if h.dtype != torch.bfloat16 else h.float().numpy()
        if is_string_array(h):
            return h
        return None

    def const_ints(self, i: int) -> Optional[list[int]]:
        arr = self.const(i)
        return None if arr is None else [int(v) for v in np.asarray(arr).reshape(-1)]

    def is_const(self, i: int) -> bool:
        h = self.input(i)
        return isinstance(h, torch.Tensor) or is_string_array(h)

    def shape(self, i: int) -> Optional[tuple[Optional[int], ...]]:
        """Known shape of input ``i``: ints, None for dynamic dims; None if the rank is unknown."""
        h = self.input(i)
        if isinstance(h, torch.Tensor) or is_string_array(h):
            return tuple(h.shape)
        if not self.has_input(i):
            return None
        return cir.static_shape(self.node.inputs[i])

    def rank(self, i: int) -> Optional[int]:
        s = self.shape(i)
        return None if s is None else len(s)

    def dtype(self, i: int) -> Optional[torch.dtype]:
        h = self.input(i)
        if isinstance(h, torch.Tensor):
            return h.dtype
        if not self.has_input(i):
            return None
        v = self.node.inputs[i]
        return None if v.dtype is None else torch_dtype(v.dtype.value)

    def output_shape(self, j: int = 0) -> Optional[tuple[Optional[int], ...]]:
        return cir.static_shape(self.node.outputs[j]) if j < len(self.node.outputs) else None

    def output_dtype(self, j: int = 0) -> Optional[torch.dtype]:
        if j >= len(self.node.outputs) or self.node.outputs[j].dtype is None:
            return None
        return torch_dtype(self.node.outputs[j].dtype.value)

    # --- emitting code -------------------------------------------------------------------------
    def _foldable(self, *parts: Any) -> bool:
        """Compute now: every argument is known and (trainable conversion) none is a weight."""
        if not self.fold or is_dynamic(parts):
            return False
        return not (self.builder.trainable and self.builder.is_weight(parts))

    def call(self, target: Callable, *args: Any, **kwargs: Any) -> Handle:
        """``target(*args, **kwargs)``: computed now when every argument is known, else emitted."""
        if self._foldable(args, kwargs):
            try:
                result = target(*args, **kwargs)
            except Exception as exc:
                raise ConversionFailure(f"{getattr(target, '__name__', target)} failed on constant inputs: {' '.join(str(exc).split())[:300]}") from exc
            self.builder.note_derived(result, ("call", target, args, kwargs))
            return result
        hint = sanitize(self.node.outputs[0].name if self.node.outputs else self.name)
        node = self.builder.graph.call_function(
            target, self.builder.lift(tuple(args), hint), self.builder.lift(dict(kwargs), hint)
        )
        if getattr(target, "__module__", "").startswith(_RUNTIME_PREFIX):
            # Runtime helpers stay leaf calls when the module is re-traced with fx.symbolic_trace
            # (fx emits ``wrap("name")`` for them); they may branch on shapes, which fx cannot trace.
            node.meta["is_wrapped"] = True
        return node

    def method(self, name: str, obj: Any, *args: Any, **kwargs: Any) -> Handle:
        """``obj.name(*args, **kwargs)`` (folded when everything is known)."""
        if self._foldable(obj, args, kwargs):
            result = getattr(obj, name)(*args, **kwargs)
            self.builder.note_derived(result, ("method", name, obj, args, kwargs))
            return result
        hint = sanitize(self.node.outputs[0].name if self.node.outputs else self.name)
        return self.builder.graph.call_method(
            name, self.builder.lift((obj,) + tuple(args), hint), self.builder.lift(dict(kwargs), hint)
        )

    def getitem(self, obj: Any, index: Any) -> Handle:
        return self.call(operator.getitem, obj, index)

    def module(self, module: torch.nn.Module, *args: Any, hint: str = "sub") -> Handle:
        """Add ``module`` as a submodule and call it."""
        target = self.builder.add_submodule(module, hint)
        return self.builder.graph.call_module(target, self.builder.lift(tuple(args), hint))

    def where(self) -> str:
        """``file: node (op)``, as errors name a node: the prefix of a converter's warnings."""
        return location(self.builder.file or None, self.name, self.op_type)

    def fail(self, message: str) -> ConversionFailure:
        """An error naming this node; ``raise ctx.fail('...')``."""
        return ConversionFailure(message, node=self.name, op_type=self.op_type)

    def unsupported(self, detail: str) -> UnsupportedOpError:
        return UnsupportedOpError(self.op_type, self.opset, self.name, domain=self.domain, detail=detail)

    # --- subgraphs -----------------------------------------------------------------------------
    def subgraph_module(self, graph: ir.Graph, *, as_tuple: bool = True) -> tuple[fx.GraphModule, list[Handle]]:
        """Convert a body graph to its own GraphModule.

        Returns the module (forward takes the body's formal inputs followed by the captured outer
        values) and the handles of those captured values, to pass at the call site.
        """
        sub = GraphBuilder(self.builder.opsets, file=self.builder.file, parent=self.builder)
        sub.convert_graph(graph)
        gm = sub.finish(list(graph.outputs), as_tuple=as_tuple)
        return gm, [outer for _, outer in sub.captures]

    def inline_subgraph(self, graph: ir.Graph, inputs: Sequence[Handle] = ()) -> list[Handle]:
        """Convert a body graph straight into the current graph (for branches known statically)."""
        b = self.builder
        for value, handle in zip(graph.inputs, inputs):
            b.env[value] = handle
        for value in graph.initializers.values():
            b.add_initializer(value)
        for node in cir.topological_nodes(graph):
            b.convert_node(node)
        return [b.lookup(v) for v in graph.outputs]
