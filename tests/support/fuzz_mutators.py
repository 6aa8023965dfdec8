"""Seeded mutators for the fuzz suite: ONNX files, MXNet symbol JSON and MXNet params.

Each mutator takes a ``random.Random`` and the bytes (or parsed object) of a valid seed and returns
bytes of a corrupted variant. They aim at what users' files really get wrong (truncation, bit rot,
tools writing wrong field types, dangling references, cycles, wrong opsets, malformed attributes,
mismatched weights) rather than at uniform noise.
"""
from __future__ import annotations

import copy
import json
import random
import struct
from typing import Callable

import onnx
from onnx import TensorProto

# --- byte level ------------------------------------------------------------------------------


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(0, max(1, len(data)))]


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        if buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf)


def splice_garbage(rng: random.Random, data: bytes) -> bytes:
    pos = rng.randrange(0, len(data) + 1)
    garbage = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    cut = rng.randint(0, 32)
    return data[:pos] + garbage + data[pos + cut:]


BYTE_MUTATORS: list[Callable[[random.Random, bytes], bytes]] = [truncate, flip_bits, splice_garbage]

# --- ONNX structure --------------------------------------------------------------------------


def _all_value_names(model: onnx.ModelProto) -> list[str]:
    names = [i.name for i in model.graph.input] + [t.name for t in model.graph.initializer]
    for n in model.graph.node:
        names += list(n.output)
    return names


def onnx_dangling_input(rng: random.Random, model: onnx.ModelProto) -> None:
    node = rng.choice(model.graph.node)
    if node.input:
        node.input[rng.randrange(len(node.input))] = f"missing_{rng.randrange(1000)}"


def onnx_cycle(rng: random.Random, model: onnx.ModelProto) -> None:
    nodes = model.graph.node
    a = rng.randrange(len(nodes))
    b = rng.randrange(a, len(nodes))
    if nodes[a].input and nodes[b].output:
        nodes[a].input[0] = nodes[b].output[0]


def onnx_wrong_opset(rng: random.Random, model: onnx.ModelProto) -> None:
    model.opset_import[0].version = rng.choice([0, 1, 2, 5, 99, 10_000, -3])


def onnx_wrong_ir_version(rng: random.Random, model: onnx.ModelProto) -> None:
    model.ir_version = rng.choice([0, 1, 2, 99, -1])


def onnx_unknown_op(rng: random.Random, model: onnx.ModelProto) -> None:
    node = rng.choice(model.graph.node)
    if rng.random() < 0.5:
        node.op_type = rng.choice(["NoSuchOp", "", "conv", "Relu\x00", "Conv" * 40])
    else:
        node.domain = rng.choice(["com.example", "ai.onnx.ml", "x" * 50])


def onnx_attribute_type(rng: random.Random, model: onnx.ModelProto) -> None:
    nodes = [n for n in model.graph.node if n.attribute]
    if not nodes:
        node = rng.choice(model.graph.node)
        node.attribute.add().CopyFrom(onnx.helper.make_attribute("bogus", rng.choice([1, 1.5, "s", [1, 2]])))
        return
    attr = rng.choice(rng.choice(nodes).attribute)
    choice = rng.randrange(5)
    if choice == 0:
        attr.type = onnx.AttributeProto.STRING
        attr.s = b"\xff\xfe not a number"
    elif choice == 1:
        attr.type = onnx.AttributeProto.INTS
        del attr.ints[:]
        attr.ints.extend(rng.choice([[], [-5], [2**40, 1], [0, 0, 0, 0, 0, 0, 0, 0]]))
    elif choice == 2:
        attr.type = onnx.AttributeProto.FLOAT
        attr.f = rng.choice([float("nan"), float("inf"), -1e30])
    elif choice == 3:
        attr.type = rng.choice([onnx.AttributeProto.UNDEFINED, onnx.AttributeProto.GRAPH,
                                onnx.AttributeProto.TENSOR])  # declared type without its field
    else:
        attr.name = ""


def onnx_remove_attribute(rng: random.Random, model: onnx.ModelProto) -> None:
    nodes = [n for n in model.graph.node if n.attribute]
    if nodes:
        node = rng.choice(nodes)
        del node.attribute[rng.randrange(len(node.attribute))]


def onnx_tensor_corruption(rng: random.Random, model: onnx.ModelProto) -> None:
    if not model.graph.initializer:
        return onnx_dangling_input(rng, model)
    t = rng.choice(model.graph.initializer)
    choice = rng.randrange(5)
    if choice == 0:
        t.data_type = rng.choice([0, 8, 99, TensorProto.INT4, TensorProto.STRING])
    elif choice == 1 and t.dims:
        t.dims[rng.randrange(len(t.dims))] = rng.choice([0, -1, 3, 2**31, 10**12])
    elif choice == 2:
        t.raw_data = t.raw_data[: len(t.raw_data) // 2]
    elif choice == 3:
        t.data_location = TensorProto.EXTERNAL
        entry = t.external_data.add()
        entry.key, entry.value = "location", rng.choice(["../../etc/passwd", "/etc/passwd", "missing.bin", ""])
    else:
        del t.dims[:]
        t.dims.extend([rng.randint(1, 5) for _ in range(rng.randint(0, 9))])


def onnx_duplicate_output(rng: random.Random, model: onnx.ModelProto) -> None:
    if len(model.graph.node) >= 2:
        a, b = rng.sample(range(len(model.graph.node)), 2)
        if model.graph.node[a].output and model.graph.node[b].output:
            model.graph.node[a].output[0] = model.graph.node[b].output[0]


def onnx_break_io(rng: random.Random, model: onnx.ModelProto) -> None:
    choice = rng.randrange(4)
    if choice == 0 and model.graph.output:
        model.graph.output[0].name = "nowhere"
    elif choice == 1:
        del model.graph.output[:]
    elif choice == 2 and model.graph.input:
        model.graph.input[0].type.tensor_type.elem_type = rng.choice([0, 8, 99])
    elif model.graph.input:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        if dims:
            dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 7, 100_000])


def onnx_shuffle_nodes(rng: random.Random, model: onnx.ModelProto) -> None:
    nodes = list(model.graph.node)
    rng.shuffle(nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


ONNX_MUTATORS: list[Callable[[random.Random, onnx.ModelProto], None]] = [
    onnx_dangling_input, onnx_cycle, onnx_wrong_opset, onnx_wrong_ir_version, onnx_unknown_op,
    onnx_attribute_type, onnx_remove_attribute, onnx_tensor_corruption, onnx_duplicate_output,
    onnx_break_io, onnx_shuffle_nodes,
]


def mutate_onnx(rng: random.Random, seed: bytes) -> tuple[str, bytes]:
    """One mutated ONNX file: (mutator name, bytes)."""
    if rng.random() < 0.35:
        mut = rng.choice(BYTE_MUTATORS)
        return mut.__name__, mut(rng, seed)
    model = onnx.ModelProto()
    model.ParseFromString(seed)
    applied = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        mut = rng.choice(ONNX_MUTATORS)
        mut(rng, model)
        applied.append(mut.__name__)
    return "+".join(applied), model.SerializeToString()


# --- MXNet symbol JSON -------------------------------------------------------------------------


def mutate_symbol_json(rng: random.Random, seed: str) -> tuple[str, bytes]:
    if rng.random() < 0.2:
        mut = rng.choice(BYTE_MUTATORS)
        return "json_" + mut.__name__, mut(rng, seed.encode())
    doc = json.loads(seed)
    nodes = doc["nodes"]
    op_nodes = [i for i, n in enumerate(nodes) if n["op"] != "null"]
    choice = rng.randrange(9)
    name = ""
    if choice == 0:
        name = "unknown_op"
        nodes[rng.choice(op_nodes)]["op"] = rng.choice(["NoSuchOp", "", "_contrib_Bogus", "Convolution2"])
    elif choice == 1:
        name = "dangling_ref"
        n = nodes[rng.choice(op_nodes)]
        if n["inputs"]:
            n["inputs"][0][0] = rng.choice([len(nodes) + 5, -1, 10**9])
    elif choice == 2:
        name = "cyclic_ref"
        i = rng.choice(op_nodes)
        if nodes[i]["inputs"]:
            nodes[i]["inputs"][0][0] = rng.choice([i, len(nodes) - 1])
    elif choice == 3:
        name = "malformed_attr"
        n = nodes[rng.choice(op_nodes)]
        attrs = n.setdefault("attrs", {})
        key = rng.choice(list(attrs) or ["kernel"])
        attrs[key] = rng.choice(["(3, 3", "__import__('os').system('false')", "[1,,2]", "((((", "1e999",
                                 "(-1, -1)", "None", "", "{'a': 1}", "(0, 0)", "True"])
    elif choice == 4:
        name = "wrong_field_type"
        n = rng.choice(nodes)
        n[rng.choice(["inputs", "name", "op", "attrs"])] = rng.choice([5, None, "x", [[]], {"a": []}])
    elif choice == 5:
        name = "bad_heads"
        doc["heads"] = rng.choice([[], [[10**6, 0, 0]], [[0, 7, 0]], "x", [[-1, 0, 0]]])
    elif choice == 6:
        name = "bad_arg_nodes"
        doc["arg_nodes"] = rng.choice([[10**6], "x", [-1], []])
    elif choice == 7:
        name = "output_index"
        n = nodes[rng.choice(op_nodes)]
        if n["inputs"]:
            n["inputs"][0][1] = rng.choice([5, -1, 10**9])
    else:
        name = "not_a_symbol"
        doc = rng.choice([[], {"nodes": []}, {"foo": 1}, None, 42])
    return name, json.dumps(doc).encode()


# --- MXNet params ------------------------------------------------------------------------------
_ND_MAGICS = (0xF993FAC9, 0xF993FACA)
_ITEMSIZE = {0: 4, 1: 8, 2: 2, 3: 1, 4: 4, 5: 1, 6: 8, 7: 1, 12: 2}


def ndarray_fields(data: bytes) -> list[dict[str, int]]:
    """Offsets of each array's dtype flag, shape and data in an MXNet NDArray-list file."""
    fields = []
    off = 24
    (count,) = struct.unpack_from("<Q", data, 16)
    for _ in range(count):
        magic, stype, ndim = struct.unpack_from("<IiI", data, off)
        if magic not in _ND_MAGICS or stype != 0:
            break
        shape_off = off + 12
        dims = struct.unpack_from(f"<{ndim}q", data, shape_off)
        ctx_off = shape_off + 8 * ndim
        dtype_off = ctx_off + 8
        (flag,) = struct.unpack_from("<i", data, dtype_off)
        size = 1
        for d in dims:
            size *= d
        data_off = dtype_off + 4
        fields.append({"shape": shape_off, "ndim": ndim, "dtype": dtype_off, "data": data_off,
                       "nbytes": size * _ITEMSIZE.get(flag, 4)})
        off = data_off + size * _ITEMSIZE.get(flag, 4)
    return fields


def mutate_params(rng: random.Random, seed: bytes) -> tuple[str, bytes]:
    choice = rng.randrange(6)
    if choice == 0:
        return "truncate", truncate(rng, seed)
    if choice == 1:
        buf = bytearray(seed)
        struct.pack_into("<Q", buf, 0, rng.choice([0, 0x113, 0xDEADBEEF, 2**63]))
        return "wrong_magic", bytes(buf)
    fields = ndarray_fields(seed)
    if not fields:
        return "flip_bits", flip_bits(rng, seed)
    f = rng.choice(fields)
    buf = bytearray(seed)
    if choice == 2:
        struct.pack_into("<i", buf, f["dtype"], rng.choice([-1, 13, 99, 2**30]))
        return "wrong_dtype_enum", bytes(buf)
    if choice == 3 and f["ndim"]:
        struct.pack_into("<q", buf, f["shape"], rng.choice([0, -1, 2**40, 3]))
        return "wrong_shape_field", bytes(buf)
    if choice == 4:
        struct.pack_into("<Q", buf, 16, rng.choice([0, 10**9, len(fields) + 3]))
        return "wrong_count", bytes(buf)
    return "flip_bits", flip_bits(rng, seed)


def params_variants(rng: random.Random, arrays: dict, shapes_hint: dict) -> tuple[str, dict]:
    """Semantic params mutations (built with mx.nd.save by the caller): missing, reshaped, retyped."""
    out = copy.copy(arrays)
    keys = sorted(out)
    key = rng.choice(keys)
    choice = rng.randrange(4)
    if choice == 0:
        del out[key]
        return "missing_array", out
    if choice == 1:
        shape = shapes_hint[key]
        out[key] = ("reshape", tuple(d + rng.randint(1, 3) for d in shape) or (2,))
        return "wrong_shape", out
    if choice == 2:
        out[key] = ("astype", rng.choice(["float16", "int32", "uint8", "float64"]))
        return "wrong_dtype", out
    out["arg:" + "unexpected_weight"] = ("new", (3, 3))
    return "extra_array", out
