"""Structural checks of an MXNet symbol JSON, in plain Python, before MXNet parses it.

MXNet 1.9.1's JSON loader trusts its input: an input reference to output 5 of a one-output
node or a head pointing past the node list crash the process natively, and an attribute that
sets a count allocates that many entries first. Everything here only reads the parsed JSON, so a
bad file ends in one :class:`~common.errors.ModelLoadError` naming the node and the field.
Nothing is refused that MXNet's loader accepts and runs: legacy fields (``param``, ``attr``,
``backward_source_id``, ``[node, output]`` pairs) pass, and a variable's ``__shape__`` and
``__dtype__`` are read as MXNet reads them (:mod:`common.mxnet_attrs`, Python-2 ``8L`` suffixes
included) where they are used, since MXNet reads them only when no shape or type is given.

What MXNet alone can tell (which ops exist, how many outputs an op has with its attributes) is
asked of it one node at a time by ``loading.py``; :func:`check_output_indices` then checks every
reference against those counts before the whole graph is handed over.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from common.errors import ModelLoadError
from common.mxnet_attrs import AttrParseError, parse_int, parse_tuple

# Fields MXNet's JSON reader accepts (it refuses unknown ones, and so do we, with a clearer line).
GRAPH_FIELDS = frozenset({"nodes", "arg_nodes", "heads", "node_row_ptr", "attrs"})
NODE_FIELDS = frozenset({"op", "name", "inputs", "attrs", "attr", "param", "control_deps", "subgraphs",
                         "backward_source_id"})
ATTR_TABLES = ("attrs", "attr", "param")
MAX_UINT32 = 2**32 - 1
MAX_NDIM = 32
# Attributes that set how many inputs or outputs an op has: huge values make MXNet allocate (and
# list) that many entries before anything can fail, so they are bounded before MXNet sees them.
COUNT_ATTRIBUTES = frozenset({"num_outputs", "num_args", "num_inputs"})
MAX_COUNT_ATTRIBUTE = 65536
MXNET_TYPE_FLAGS = {0: "float32", 1: "float64", 2: "float16", 3: "uint8", 4: "int32", 5: "int8", 6: "int64",
                    7: "bool", 12: "bfloat16"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    """Walks one graph (and its subgraphs), raising on the first problem found."""

    def __init__(self, file: Optional[str]) -> None:
        self.file = file

    def fail(self, message: str, node: Optional[dict] = None, index: Optional[int] = None, *,
             reader: bool = False) -> ModelLoadError:
        """The error for one problem; ``reader``: MXNet's JSON reader refuses the file for it too,
        before it builds any graph (so MXNet can be asked for its reason safely)."""
        name = op = None
        if node is not None:
            name = node.get("name") if isinstance(node.get("name"), str) and node.get("name") else f"node {index}"
            op = node.get("op") if isinstance(node.get("op"), str) and node.get("op") not in ("", "null") else None
        error = ModelLoadError(message, file=self.file, node=name, op_type=op)
        error.mxnet_reader_refuses = reader
        return error

    def graph(self, graph: Any, where: str = "") -> None:
        if not isinstance(graph, dict):
            raise self.fail(f"not an MXNet symbol file{where} (expected a JSON object with 'nodes', 'arg_nodes' "
                            f"and 'heads', got {type(graph).__name__})", reader=True)
        missing = [k for k in ("nodes", "arg_nodes", "heads") if k not in graph]
        if missing:
            raise self.fail(f"not an MXNet symbol file{where} (expected a JSON object with 'nodes', 'arg_nodes' "
                            f"and 'heads'; '{missing[0]}' is missing)", reader=True)
        unknown = sorted(set(graph) - GRAPH_FIELDS)
        if unknown:
            raise self.fail(f"MXNet symbol{where} has an unexpected field '{unknown[0]}'", reader=True)
        nodes = graph["nodes"]
        if not isinstance(nodes, list) or not nodes:
            raise self.fail(f"MXNet symbol{where}: 'nodes' must be a non-empty list")
        for index, node in enumerate(nodes):
            self.node(node, index, len(nodes), where)
        self.arg_nodes(graph["arg_nodes"], nodes, where)
        heads = graph["heads"]
        if not isinstance(heads, list) or not heads:
            raise self.fail(f"MXNet symbol{where} has no outputs ('heads' must be a non-empty list)")
        for entry in heads:
            self.entry(entry, len(nodes), len(nodes), f"output (heads entry) {entry!r}{where}", None, None)
        row_ptr = graph.get("node_row_ptr", [])
        if not isinstance(row_ptr, list) or not all(_is_int(v) and 0 <= v <= MAX_UINT32 for v in row_ptr):
            raise self.fail(f"MXNet symbol{where}: 'node_row_ptr' must be a list of non-negative integers",
                            reader=not isinstance(row_ptr, list) or not all(_is_int(v) for v in row_ptr))
        self.graph_attrs(graph.get("attrs", {}), where)

    def graph_attrs(self, attrs: Any, where: str) -> None:
        if not isinstance(attrs, dict):
            raise self.fail(f"MXNet symbol{where}: 'attrs' must be an object", reader=True)
        for key, value in attrs.items():
            if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
                raise self.fail(f"MXNet symbol{where}: graph attribute '{key}' must be [type, value], got {value!r}",
                                reader=True)
        version = attrs.get("mxnet_version")
        if version is not None and not (version[0] == "int" and _is_int(version[1]) and 0 <= version[1] < 2**31):
            raise self.fail(f"MXNet symbol{where}: 'mxnet_version' must be [\"int\", N], got {version!r}")

    def arg_nodes(self, arg_nodes: Any, nodes: list, where: str) -> None:
        if not isinstance(arg_nodes, list):
            raise self.fail(f"MXNet symbol{where}: 'arg_nodes' must be a list of node indices", reader=True)
        for value in arg_nodes:
            if not _is_int(value) or not 0 <= value < len(nodes):
                raise self.fail(f"MXNet symbol{where}: 'arg_nodes' entry {value!r} is not a node index "
                                f"(0..{len(nodes) - 1})")
            if nodes[value]["op"] != "null":
                raise self.fail(f"'arg_nodes' lists node {value}{where}, which is an operator, not a variable",
                                nodes[value], value)

    def node(self, node: Any, index: int, count: int, where: str) -> None:
        if not isinstance(node, dict):
            raise self.fail(f"not an MXNet symbol file{where} (node {index} is a {type(node).__name__}, "
                            "not an object)", reader=True)
        for key in ("op", "name", "inputs"):
            if key not in node:
                raise self.fail(f"not an MXNet symbol file{where} (node {index} lacks '{key}')", node, index,
                                reader=True)
        if not isinstance(node["name"], str) or not node["name"]:  # MXNet runs unnamed ops; we name tensors by them
            raise self.fail(f"'name' must be a non-empty string, got {node['name']!r}{where}"[:200], node, index,
                            reader=not isinstance(node["name"], str))
        if not isinstance(node["op"], str):
            raise self.fail(f"'op' must be a string, got {node['op']!r}", node, index, reader=True)
        if not node["op"]:
            raise self.fail("'op' is empty (variables have op 'null')", node, index)
        unknown = sorted(set(node) - NODE_FIELDS)
        if unknown:
            raise self.fail(f"unexpected field '{unknown[0]}'", node, index, reader=True)
        for table in ATTR_TABLES:
            self.attr_table(node, index, table)
        inputs = node["inputs"]
        if not isinstance(inputs, list):
            raise self.fail(f"'inputs' must be a list of [node, output, version] entries, got {inputs!r}",
                            node, index, reader=True)
        for entry in inputs:
            self.entry(entry, index, count, f"input {entry!r}", node, index)
        deps = node.get("control_deps", [])
        if not isinstance(deps, list) or not all(_is_int(d) and 0 <= d < index for d in deps):
            raise self.fail(f"'control_deps' must list earlier node indices, got {deps!r}", node, index)
        if "backward_source_id" in node and not _is_int(node["backward_source_id"]):
            raise self.fail("'backward_source_id' must be an integer", node, index, reader=True)
        subgraphs = node.get("subgraphs", [])
        if not isinstance(subgraphs, list):
            raise self.fail("'subgraphs' must be a list of graphs", node, index, reader=True)
        for k, sub in enumerate(subgraphs):
            self.graph(sub, f" (subgraph {k} of node '{node['name']}')")
        if node["op"] == "null":
            self.variable_attrs(node, index)
        else:
            self.count_attrs(node, index)

    def attr_table(self, node: dict, index: int, table: str) -> None:
        attrs = node.get(table, {})
        if not isinstance(attrs, dict):
            raise self.fail(f"'{table}' must be an object of string attributes, got {attrs!r}"[:200], node, index,
                            reader=True)
        for key, value in attrs.items():
            if not isinstance(value, str):
                raise self.fail(f"attribute '{key}' must be a string, got {value!r}"[:200], node, index, reader=True)

    def entry(self, entry: Any, limit: int, count: int, what: str, node: Optional[dict],
              index: Optional[int]) -> None:
        """A ``[node, output, version]`` reference (MXNet also reads ``[node, output]``); ``limit``:
        the first node index it may not refer to, ``count``: the number of nodes."""
        if not (isinstance(entry, list) and len(entry) in (2, 3) and all(_is_int(v) for v in entry)):
            raise self.fail(f"{what} is not a [node, output, version] list of integers", node, index, reader=True)
        source, output = entry[0], entry[1]
        version = entry[2] if len(entry) == 3 else 0
        if not 0 <= source < count:
            raise self.fail(f"{what} refers to node {source}, but the graph has nodes 0..{count - 1}", node, index)
        if source >= limit:
            raise self.fail(f"{what} refers to node {source}, which does not come before it (MXNet graphs list "
                            "every node after its inputs; a cycle?)", node, index)
        if not 0 <= output <= MAX_UINT32 or not 0 <= version <= MAX_UINT32:
            raise self.fail(f"{what}: output index and version must be between 0 and 2**32-1", node, index)

    def variable_attrs(self, node: dict, index: int) -> None:
        """A declared ``__shape__`` that MXNet would misread (dimensions past int32 wrap to
        negative sizes, hundreds of dimensions) is refused; others are read where used."""
        for table in ATTR_TABLES:
            text = node.get(table, {}).get("__shape__")
            if text is not None:
                guard_shape_attribute(text, lambda msg: self.fail(msg, node, index))

    def count_attrs(self, node: dict, index: int) -> None:
        for table in ATTR_TABLES:
            for key, value in node.get(table, {}).items():
                if key in COUNT_ATTRIBUTES:
                    try:
                        number = parse_int(value)
                    except AttrParseError:
                        continue  # MXNet refuses it with its own message when the node is probed
                    if not 0 <= number <= MAX_COUNT_ATTRIBUTE:
                        raise self.fail(f"attribute {key}={value!r}: must be between 0 and {MAX_COUNT_ATTRIBUTE}",
                                        node, index)


def guard_shape_attribute(text: str, fail: Callable[[str], Exception]) -> None:
    """Refuse a ``__shape__`` that parses (as MXNet parses it) to dimensions MXNet cannot hold."""
    try:
        value = parse_tuple(text, stream=True)
    except AttrParseError:
        return
    if value is None:
        return
    if len(value) > MAX_NDIM:
        raise fail(f"attribute __shape__={text!r} has {len(value)} dimensions (at most {MAX_NDIM})")
    if any(d > 2**31 - 1 for d in value):
        raise fail(f"attribute __shape__={text!r}: a dimension exceeds 2**31-1 (MXNet 1.9.1 would read it as a "
                   "negative size)")


def declared_shape(text: str) -> Optional[tuple[int, ...]]:
    """A variable's declared shape as MXNet's shape inference reads it (the leading tuple,
    ``L`` suffixes allowed; 0 and -1 mean unknown); ``None`` for MXNet's ``None``. Raises
    :class:`~common.mxnet_attrs.AttrParseError` when MXNet cannot read it, ``ValueError`` for a
    dimension below -1 (MXNet: "shape dim size must be >= -1")."""
    value = parse_tuple(text, stream=True)
    if value is not None and any(d < -1 for d in value):
        raise ValueError(f"shape dim size must be >= -1, while received {min(value)}")
    return value


def declared_dtype(text: str) -> Optional[int]:
    """A variable's declared ``__dtype__`` flag as MXNet's type inference reads it (the leading
    integer); ``None`` for -1 (unknown). Raises :class:`~common.mxnet_attrs.AttrParseError` for
    text MXNet cannot read, ``ValueError`` for a flag it does not know."""
    flag = parse_int(text, stream=True)
    if flag == -1:
        return None
    if flag not in MXNET_TYPE_FLAGS:
        known = ", ".join(f"{k} {v}" for k, v in MXNET_TYPE_FLAGS.items())
        raise ValueError(f"__dtype__={text!r} is not an MXNet type flag ({known})")
    return flag


def check_structure(graph: Any, file: Optional[str] = None) -> dict:
    """Raise :class:`ModelLoadError` unless ``graph`` (parsed JSON) is a well-formed MXNet symbol.

    Checks field types, that every reference points to an earlier node (MXNet's JSON is in
    topological order, so this also refuses cycles), ``arg_nodes``, ``heads`` and count
    attributes. Output indices are checked separately
    (:func:`check_output_indices`) because only MXNet knows how many outputs an op has.
    """
    _Checker(file).graph(graph)
    return graph


def check_output_indices(graph: dict, num_outputs: Callable[[int], int], file: Optional[str] = None) -> None:
    """Every ``[node, output, ...]`` reference must name an output the node has.

    ``num_outputs(i)`` is the number of (visible) outputs of node ``i``; variables have one.
    """
    nodes = graph["nodes"]
    checker = _Checker(file)

    def check(entry: list, what: str, node: Optional[dict], index: Optional[int]) -> None:
        source, output = entry[0], entry[1]
        count = 1 if nodes[source]["op"] == "null" else num_outputs(source)
        if output >= count:
            target = nodes[source]
            kind = "variable" if target["op"] == "null" else target["op"]
            raise checker.fail(f"{what} refers to output {output} of '{target['name']}' ({kind}), which has "
                               f"{count} output(s)", node, index)

    for index, node in enumerate(nodes):
        for entry in node["inputs"]:
            check(entry, f"input {entry!r}", node, index)
    for entry in graph["heads"]:
        check(entry, f"output (heads entry) {entry!r}", None, None)
