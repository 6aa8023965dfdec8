"""Element-wise converters (arithmetic, logical, activation, cast, constant) against onnxruntime.

The ONNX conformance cases cover the common paths; these cases target what they miss: values at
the edges of uint32/uint64 (which torch's kernels lack and the converters emulate), float8 casts
across the whole range with and without saturation (against onnx's reference implementation), integer Div/Mod/Pow dtype rules, Clip with
run-time and crossed bounds, every Constant attribute form, and clear errors for dtypes torch
does not have.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper

from common.errors import UnsupportedOpError
from onnx2x.torch import convert
from tests.support.onnx_cases import check_converted, typed_model

OPSET = 19


def make_model(nodes, inputs, outputs, opset: int = OPSET) -> onnx.ModelProto:
    return typed_model(nodes, inputs, outputs, opset=opset)


def check(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    """Every output of the onnx2x module against onnxruntime."""
    check_converted(model, feeds, rtol=1e-5, atol=1e-6)


UINT64_EDGES = np.array(
    [2**64 - 1, 2**63 + 5, 7, 0, 12345678901234567890, 2**63, 2**63 - 1, 1], dtype=np.uint64
)
UINT64_DIVISORS = np.array(
    [3, 2**63 + 1, 2**64 - 1, 5, 98765, 2**63 - 1, 2**63, 2**64 - 2], dtype=np.uint64
)


@pytest.mark.parametrize("np_type,onnx_type", [(np.uint64, TP.UINT64), (np.uint32, TP.UINT32)])
def test_wide_unsigned_ops_match_onnxruntime(np_type, onnx_type) -> None:
    bits = np.iinfo(np_type).bits
    a = (UINT64_EDGES % (2**bits)).astype(np_type) if bits < 64 else UINT64_EDGES
    b = np.maximum(UINT64_DIVISORS % (2**bits), 1).astype(np_type) if bits < 64 else UINT64_DIVISORS
    shift = np.array([1, bits - 1, 3, 0, 5, 1, 2, bits - 2], dtype=np_type)
    specs = [("Add", False), ("Sub", False), ("Mul", False), ("Div", False), ("Mod", False),
             ("Max", False), ("Min", False), ("Less", True), ("GreaterOrEqual", True), ("Equal", True)]
    nodes, outputs = [], []
    for op, is_comparison in specs:
        nodes.append(helper.make_node(op, ["a", "b"], [op]))
        outputs.append((op, TP.BOOL if is_comparison else onnx_type, [8]))
    nodes.append(helper.make_node("BitShift", ["a", "s"], ["shl"], direction="LEFT"))
    nodes.append(helper.make_node("BitShift", ["a", "s"], ["shr"], direction="RIGHT"))
    nodes.append(helper.make_node("Clip", ["a", "lo", "hi"], ["clip"]))
    outputs += [("shl", onnx_type, [8]), ("shr", onnx_type, [8]), ("clip", onnx_type, [8])]
    lo = np.array(5, dtype=np_type)
    hi = np.array(a[1], dtype=np_type)  # a large bound: exact only without a float detour
    model = make_model(nodes, [("a", onnx_type, [8]), ("b", onnx_type, [8]), ("s", onnx_type, [8]),
                               ("lo", onnx_type, []), ("hi", onnx_type, [])], outputs)
    check(model, {"a": a, "b": b, "s": shift, "lo": lo, "hi": hi})


def test_signed_integer_division_mod_and_pow_keep_onnx_dtypes() -> None:
    a = np.array([-7, 7, -8, 9, 0, -1], dtype=np.int32)
    b = np.array([2, -2, 3, -4, 5, 3], dtype=np.int32)
    e = np.array([0.5, 2.0, 1.5, 0.0, 3.0, 2.0], dtype=np.float32)
    nodes = [helper.make_node("Div", ["a", "b"], ["div"]),
             helper.make_node("Mod", ["a", "b"], ["mod"], fmod=0),
             helper.make_node("Mod", ["a", "b"], ["fmod"], fmod=1),
             helper.make_node("Pow", ["b", "e"], ["pow"])]
    outputs = [("div", TP.INT32, [6]), ("mod", TP.INT32, [6]), ("fmod", TP.INT32, [6]), ("pow", TP.INT32, [6])]
    model = make_model(nodes, [("a", TP.INT32, [6]), ("b", TP.INT32, [6]), ("e", TP.FLOAT, [6])], outputs)
    check(model, {"a": a, "b": b, "e": e})


FLOAT8_TYPES = [TP.FLOAT8E4M3FN, TP.FLOAT8E4M3FNUZ, TP.FLOAT8E5M2, TP.FLOAT8E5M2FNUZ]


@pytest.mark.parametrize("saturate", [1, 0])
@pytest.mark.parametrize("to", FLOAT8_TYPES)
def test_float8_casts_match_the_onnx_reference(to: int, saturate: int) -> None:
    """Against onnx's ReferenceEvaluator, which produced the conformance data: onnxruntime 1.31
    departs from the spec without saturation (E5M2 overflow gives NaN, not Inf)."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    x = np.concatenate([
        np.linspace(-70000, 70000, 4001, dtype=np.float32),
        np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 448, 449, 464, 465, -464, -465, 480, 240, 247,
                  248, 249, 57344, 61439, 61440, 61441, 2**-10, 2**-9.5, 2**-17, 2**-16.5], dtype=np.float32),
        (rng.standard_normal(2000) * np.exp(rng.standard_normal(2000) * 4)).astype(np.float32),
    ])
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=to, saturate=saturate)],
                       [("x", TP.FLOAT, [x.size])], [("y", to, [x.size])])
    y = convert(model, simplify=False)(torch.from_numpy(x))
    assert y.dtype == {TP.FLOAT8E4M3FN: torch.float8_e4m3fn, TP.FLOAT8E4M3FNUZ: torch.float8_e4m3fnuz,
                       TP.FLOAT8E5M2: torch.float8_e5m2, TP.FLOAT8E5M2FNUZ: torch.float8_e5m2fnuz}[to]
    with np.errstate(over="ignore", invalid="ignore"):
        (ref,) = ReferenceEvaluator(model).run(None, {"x": x})
    ref = np.asarray(ref).astype(np.float32)
    got = y.to(torch.float32).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(got[~np.isnan(ref)], ref[~np.isnan(ref)])
    np.testing.assert_array_equal(np.signbit(got[~np.isnan(ref)]), np.signbit(ref[~np.isnan(ref)]))


def test_clip_with_runtime_and_crossed_bounds() -> None:
    x = np.array([-5, -1, 0, 3, 9, 100], dtype=np.int8)
    model = make_model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"]),
                        helper.make_node("Clip", ["x", "hi", "lo"], ["crossed"]),
                        helper.make_node("Clip", ["x", "", "hi"], ["upper_only"])],
                       [("x", TP.INT8, [6]), ("lo", TP.INT8, []), ("hi", TP.INT8, [])],
                       [("y", TP.INT8, [6]), ("crossed", TP.INT8, [6]), ("upper_only", TP.INT8, [6])])
    check(model, {"x": x, "lo": np.array(-2, np.int8), "hi": np.array(4, np.int8)})


def test_constant_attribute_forms_and_bfloat16() -> None:
    bf16 = helper.make_tensor("t", TP.BFLOAT16, [3], [1.0, 2.5, -3.0])
    nodes = [helper.make_node("Constant", [], ["f"], value_float=1.5),
             helper.make_node("Constant", [], ["fs"], value_floats=[1.0, -2.0]),
             helper.make_node("Constant", [], ["i"], value_int=7),
             helper.make_node("Constant", [], ["is"], value_ints=[3, -4, 5]),
             helper.make_node("Constant", [], ["b"], value=bf16),
             helper.make_node("Cast", ["b"], ["bf"], to=TP.FLOAT),
             helper.make_node("CastLike", ["x", "i"], ["like"])]
    model = make_model(nodes, [("x", TP.FLOAT, [2])],
                       [("f", TP.FLOAT, []), ("fs", TP.FLOAT, [2]), ("i", TP.INT64, []),
                        ("is", TP.INT64, [3]), ("bf", TP.FLOAT, [3]), ("like", TP.INT64, [2])])
    check(model, {"x": np.array([2.7, -1.9], np.float32)})


@pytest.mark.parametrize("to", [TP.INT4, TP.UINT4, TP.FLOAT4E2M1, TP.FLOAT8E8M0, TP.STRING])
def test_casts_to_types_without_torch_dtype_fail_clearly(to: int) -> None:
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=to)],
                       [("x", TP.FLOAT, [2])], [("y", to, [2])], opset=23)
    with pytest.raises(UnsupportedOpError, match=onnx.TensorProto.DataType.Name(to)):
        convert(model, simplify=False)


def test_converted_unsigned_model_exports() -> None:
    """The dtype-dispatching helpers stay traceable by torch.export."""
    model = make_model([helper.make_node("Div", ["a", "b"], ["q"]),
                        helper.make_node("Less", ["a", "b"], ["lt"])],
                       [("a", TP.UINT64, [4]), ("b", TP.UINT64, [4])],
                       [("q", TP.UINT64, [4]), ("lt", TP.BOOL, [4])])
    gm = convert(model, simplify=False)
    args = (torch.from_numpy(UINT64_EDGES[:4].copy()), torch.from_numpy(UINT64_DIVISORS[:4].copy()))
    exported = torch.export.export(gm, args)
    q, lt = exported.module()(*args)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref_q, ref_lt = sess.run(None, {"a": args[0].numpy(), "b": args[1].numpy()})
    np.testing.assert_array_equal(q.numpy(), ref_q)
    np.testing.assert_array_equal(lt.numpy(), ref_lt)
