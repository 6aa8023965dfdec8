"""onnxruntime's quantized operators (com.microsoft QLinear*, QGemm, MatMulNBits, ...) against
onnxruntime, op by op, with attribute variations.

How outputs are judged: see :mod:`tests.support.quant_cases` (every element within one
quantization step of onnxruntime's, at most a small fraction off by that step; float outputs
within float32 rounding). Two known onnxruntime deviations are tested against the operator's
definition instead (numpy): MatMulNBits with g_idx and uint8 zero points (onnxruntime 1.31 drops
the zero points) and QLinearConv with full-range uint8 x int8 operands (onnxruntime's AVX2 kernels
saturate pair sums at int16).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper

from common.errors import ConversionError, UnsupportedOpError
from onnx2x.torch import convert
from tests.support.quant_cases import assert_within_one_step, ms_model, ort_run, quantize_uniform, torch_run

MS = "com.microsoft"
NP_TO_TP = {np.uint8: TP.UINT8, np.int8: TP.INT8}
Q8 = [np.uint8, np.int8]


def _zp(dtype, value: int) -> np.ndarray:
    return np.array(value if dtype == np.uint8 else value - 128, dtype=dtype)


def _check(model: onnx.ModelProto, feeds: dict, *, max_fraction: float = 0.01) -> list[float]:
    expected = ort_run(model, feeds)
    got = torch_run(model, feeds, names=[i.name for i in model.graph.input])
    assert len(got) == len(expected)
    return [assert_within_one_step(g, e, max_fraction=max_fraction) if e.dtype.kind in "iu"
            else np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(e).max())))
            for g, e in zip(got, expected)]


# --- element-wise -------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dtype", Q8)
@pytest.mark.parametrize("b_shape", [(2, 3, 8, 8), (1, 3, 1, 1), (8,), ()])
def test_qlinear_binary(op, dtype, b_shape):
    rng = np.random.default_rng(0)
    a = quantize_uniform(rng, (2, 3, 8, 8), dtype)
    b = quantize_uniform(rng, b_shape, dtype)
    inits = {"sa": np.float32(0.031), "za": _zp(dtype, 121), "sb": np.float32(0.017), "zb": _zp(dtype, 140),
             "sc": np.float32(0.043 if op == "QLinearAdd" else 0.29), "zc": _zp(dtype, 118)}
    node = helper.make_node(op, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"], domain=MS)
    t = NP_TO_TP[dtype]
    model = ms_model([node], [("a", t, a.shape), ("b", t, b.shape)], [("c", t, None)], inits)
    _check(model, {"a": a, "b": b})


@pytest.mark.parametrize("op,attrs", [("QLinearSigmoid", {}), ("QLinearLeakyRelu", {}),
                                      ("QLinearLeakyRelu", {"alpha": 0.3}), ("QLinearLeakyRelu", {"alpha": -1.7})])
@pytest.mark.parametrize("dtype", Q8)
def test_qlinear_unary_every_code(op, attrs, dtype):
    """All 256 input codes: the whole lookup table, bit for bit up to rounding ties."""
    x = np.arange(256).astype(np.uint8).view(dtype).reshape(1, 4, 8, 8) if dtype == np.int8 else \
        np.arange(256, dtype=np.uint8).reshape(1, 4, 8, 8)
    node = helper.make_node(op, ["x", "sx", "zx", "sy", "zy"], ["y"], domain=MS, **attrs)
    t = NP_TO_TP[dtype]
    inits = {"sx": np.float32(0.047), "zx": _zp(dtype, 131), "sy": np.float32(1 / 255 if op == "QLinearSigmoid" else 0.05),
             "zy": _zp(dtype, 0 if op == "QLinearSigmoid" else 100)}
    model = ms_model([node], [("x", t, x.shape)], [("y", t, None)], inits)
    _check(model, {"x": x})


@pytest.mark.parametrize("dtype", Q8)
def test_qlinear_where(dtype):
    rng = np.random.default_rng(2)
    x, y = quantize_uniform(rng, (3, 10), dtype), quantize_uniform(rng, (3, 10), dtype)
    cond = rng.random((3, 10)) > 0.5
    node = helper.make_node("QLinearWhere", ["c", "x", "sx", "zx", "y", "sy", "zy", "sz", "zz"], ["z"], domain=MS)
    t = NP_TO_TP[dtype]
    inits = {"sx": np.float32(0.03), "zx": _zp(dtype, 110), "sy": np.float32(0.07), "zy": _zp(dtype, 150),
             "sz": np.float32(0.05), "zz": _zp(dtype, 128)}
    model = ms_model([node], [("c", TP.BOOL, cond.shape), ("x", t, x.shape), ("y", t, y.shape)], [("z", t, None)], inits)
    _check(model, {"c": cond, "x": x, "y": y})


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", Q8)
def test_qlinear_concat_requantizes_each_input(axis, dtype):
    rng = np.random.default_rng(3)
    xs = [quantize_uniform(rng, (2, 3, 4), dtype) for _ in range(3)]
    inits = {"sy": np.float32(0.05), "zy": _zp(dtype, 128)}
    names = ["sy", "zy"]
    for i, (s, z) in enumerate([(0.05, 128), (0.021, 100), (0.11, 140)]):  # the first equals the output's
        inits[f"s{i}"], inits[f"z{i}"] = np.float32(s), _zp(dtype, z)
        names += [f"x{i}", f"s{i}", f"z{i}"]
    node = helper.make_node("QLinearConcat", names, ["y"], domain=MS, axis=axis)
    t = NP_TO_TP[dtype]
    model = ms_model([node], [(f"x{i}", t, x.shape) for i, x in enumerate(xs)], [("y", t, None)], inits)
    _check(model, {f"x{i}": x for i, x in enumerate(xs)})


# --- softmax and pools ----------------------------------------------------------------------------

@pytest.mark.parametrize("opset,axis,shape", [(13, -1, (2, 3, 10)), (13, 1, (2, 7, 5)), (12, 1, (2, 3, 4)),
                                              (12, 2, (2, 3, 4, 5)), (11, None, (2, 6, 3, 1)),
                                              (11, None, (2, 5, 4)), (13, None, (2, 5, 4))])
@pytest.mark.parametrize("dtype", Q8)
@pytest.mark.parametrize("known_shape", [True, False])
def test_qlinear_softmax(opset, axis, shape, dtype, known_shape):
    """``axis=None``: no attribute, as onnxruntime's quantizer writes an opset-11 Softmax over its
    default axis 1; onnxruntime then uses the schema's -1 (every output 1.0 on a last axis of 1)."""
    rng = np.random.default_rng(4)
    x = quantize_uniform(rng, shape, dtype)
    attrs = {"opset": opset} if axis is None else {"opset": opset, "axis": axis}
    node = helper.make_node("QLinearSoftmax", ["x", "sx", "zx", "sy", "zy"], ["y"], domain=MS, **attrs)
    t = NP_TO_TP[dtype]
    inits = {"sx": np.float32(0.06), "zx": _zp(dtype, 128), "sy": np.float32(1 / 256), "zy": _zp(dtype, 0)}
    declared = shape if known_shape else ["d%d" % i for i in range(len(shape))]
    model = ms_model([node], [("x", t, declared)], [("y", t, None)], inits)
    _check(model, {"x": x})


def test_qlinear_softmax_without_axis_warns_where_onnxruntime_leaves_the_quantized_softmax(monkeypatch, tmp_path):
    """onnxruntime's quantizer writes an opset-11 Softmax over (N, C, 1, 1) logits without an axis;
    onnxruntime then normalizes each size-1 last axis (its float32 arithmetic overflows there, to
    0 for uint8): converted as onnxruntime computes it, and the warning names the file, the node
    and the op, and says so."""
    node = helper.make_node("QLinearSoftmax", ["x", "sx", "zx", "sy", "zy"], ["y"], "probs_quant", domain=MS, opset=11)
    inits = {"sx": np.float32(0.05), "zx": np.uint8(128), "sy": np.float32(1 / 256), "zy": np.uint8(0)}
    model = ms_model([node], [("x", TP.UINT8, (1, 8, 1, 1))], [("y", TP.UINT8, None)], inits)
    x = quantize_uniform(np.random.default_rng(6), (1, 8, 1, 1), np.uint8)
    import logging

    logger = logging.getLogger("onnx2x.torch.ops.qlinear_ms")  # listened to directly: other tests reconfigure the root
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    monkeypatch.setattr(logger, "disabled", False)
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    path = tmp_path / "quantized.onnx"
    onnx.save(model, str(path))
    try:
        got = torch_run(model, {"x": x}, names=["x"])[0]
        convert(str(path))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    np.testing.assert_array_equal(got, ort_run(model, {"x": x})[0])
    texts = [r.getMessage() for r in records]
    assert len(texts) == 2 and all("probs_quant (QLinearSoftmax): no axis attribute" in t for t in texts)
    assert "over one element" in texts[0] and texts[1].startswith(f"{path}: probs_quant (QLinearSoftmax): ")


@pytest.mark.parametrize("channels_last", [0, 1])
@pytest.mark.parametrize("dtype", Q8)
def test_qlinear_global_average_pool(channels_last, dtype):
    rng = np.random.default_rng(5)
    x = quantize_uniform(rng, (2, 5, 7, 6) if not channels_last else (2, 7, 6, 5), dtype)
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "sx", "zx", "sy", "zy"], ["y"], domain=MS,
                            channels_last=channels_last)
    t = NP_TO_TP[dtype]
    model = ms_model([node], [("x", t, x.shape)], [("y", t, None)],
                     {"sx": np.float32(0.04), "zx": _zp(dtype, 120), "sy": np.float32(0.013), "zy": _zp(dtype, 130)})
    _check(model, {"x": x})


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [2, 2], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [0, 1, 1, 0]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "channels_last": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1, "count_include_pad": 1, "pads": [1, 1, 1, 1]},
    {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "count_include_pad": 1},
])
@pytest.mark.parametrize("dtype", Q8)
def test_qlinear_average_pool(attrs, dtype):
    rng = np.random.default_rng(6)
    shape = (1, 7, 8, 3) if attrs.get("channels_last") else (1, 3, 7, 8)
    x = quantize_uniform(rng, shape, dtype)
    node = helper.make_node("QLinearAveragePool", ["x", "sx", "zx", "sy", "zy"], ["y"], domain=MS, **attrs)
    t = NP_TO_TP[dtype]
    model = ms_model([node], [("x", t, x.shape)], [("y", t, None)],
                     {"sx": np.float32(0.04), "zx": _zp(dtype, 120), "sy": np.float32(0.021), "zy": _zp(dtype, 131)})
    _check(model, {"x": x})


# --- QGemm and integer matmuls --------------------------------------------------------------------

@pytest.mark.parametrize("trans_a,trans_b,alpha", [(0, 0, 1.0), (1, 0, 1.0), (0, 1, 0.5), (1, 1, 2.0)])
@pytest.mark.parametrize("with_c", [False, True])
@pytest.mark.parametrize("requant", [False, True])
@pytest.mark.parametrize("a_dtype,b_dtype,per_column", [(np.uint8, np.int8, False), (np.uint8, np.uint8, True),
                                                        (np.int8, np.int8, True)])
def test_qgemm(trans_a, trans_b, alpha, with_c, requant, a_dtype, b_dtype, per_column):
    rng = np.random.default_rng(7)
    m, k, n = 5, 12, 6
    a = quantize_uniform(rng, (k, m) if trans_a else (m, k), a_dtype)
    # 7-bit weights keep onnxruntime's uint8 x int8 AVX2 kernel clear of its int16 saturation
    b = (quantize_uniform(rng, (n, k) if trans_b else (k, n), b_dtype) // 2).astype(b_dtype)
    bs = (rng.random(n if per_column else 1) * 0.02 + 0.005).astype(np.float32)
    bz = (rng.integers(100, 150, bs.shape) if b_dtype == np.uint8 else np.zeros(bs.shape)).astype(b_dtype)
    inits = {"sa": np.float32(0.03), "za": _zp(a_dtype, 125), "b": b, "sb": bs, "zb": bz}
    names = ["a", "sa", "za", "b", "sb", "zb"]
    names.append("c" if with_c else "")
    if with_c:
        inits["c"] = rng.integers(-2000, 2000, (n,)).astype(np.int32)
    out_type = TP.FLOAT
    if requant:
        inits["sy"], inits["zy"] = np.float32(0.4), _zp(a_dtype, 128)
        names += ["sy", "zy"]
        out_type = NP_TO_TP[a_dtype]
    node = helper.make_node("QGemm", names, ["y"], domain=MS, transA=trans_a, transB=trans_b, alpha=alpha)
    model = ms_model([node], [("a", NP_TO_TP[a_dtype], a.shape)], [("y", out_type, None)], inits)
    _check(model, {"a": a})


@pytest.mark.parametrize("b_dtype", Q8)
@pytest.mark.parametrize("per_column,with_zp,with_bias", [(False, True, True), (True, True, False), (True, False, True)])
def test_matmul_integer_to_float(b_dtype, per_column, with_zp, with_bias):
    rng = np.random.default_rng(8)
    a = quantize_uniform(rng, (2, 3, 16), np.uint8)
    b = (quantize_uniform(rng, (16, 8), b_dtype) // 2).astype(b_dtype)
    inits = {"b": b, "sa": np.float32(0.02), "sb": (rng.random(8 if per_column else 1) * 0.01 + 0.01).astype(np.float32)}
    names = ["a", "b", "sa", "sb", "za" if with_zp else "", "zb" if with_zp else ""]
    if with_zp:
        inits["za"] = np.uint8(130)
        inits["zb"] = _zp(b_dtype, 128) if not per_column else np.full(8, _zp(b_dtype, 128), dtype=b_dtype)
    if with_bias:
        inits["bias"] = rng.standard_normal(8).astype(np.float32)
        names.append("bias")
    node = helper.make_node("MatMulIntegerToFloat", names, ["y"], domain=MS)
    model = ms_model([node], [("a", TP.UINT8, a.shape)], [("y", TP.FLOAT, None)], inits)
    _check(model, {"a": a})


@pytest.mark.parametrize("b_dtype", Q8)
@pytest.mark.parametrize("per_column,with_bias", [(False, False), (True, True)])
def test_dynamic_quantize_matmul(b_dtype, per_column, with_bias):
    rng = np.random.default_rng(9)
    a = rng.standard_normal((3, 4, 32)).astype(np.float32)
    b = (quantize_uniform(rng, (32, 16), b_dtype) // 2).astype(b_dtype)
    inits = {"b": b, "sb": (rng.random(16 if per_column else 1) * 0.01 + 0.01).astype(np.float32),
             "zb": np.full(16 if per_column else 1, _zp(b_dtype, 128) if b_dtype == np.uint8 else 0, dtype=b_dtype)}
    names = ["a", "b", "sb", "zb"]
    if with_bias:
        inits["bias"] = rng.standard_normal(16).astype(np.float32)
        names.append("bias")
    node = helper.make_node("DynamicQuantizeMatMul", names, ["y"], domain=MS)
    model = ms_model([node], [("a", TP.FLOAT, a.shape)], [("y", TP.FLOAT, None)], inits)
    _check(model, {"a": a})


def _zero_point(rng, dtype, kind: str, rows: int, cols: int):
    lo, hi = (0, 256) if dtype == np.uint8 else (-128, 128)
    if kind == "none":
        return None
    if kind == "scalar":
        return torch.tensor(int(rng.integers(lo, hi)), dtype=torch.uint8 if dtype == np.uint8 else torch.int8)
    n = rows if kind == "per_row" else cols
    return torch.from_numpy(rng.integers(lo, hi, n).astype(dtype))


@pytest.mark.parametrize("a_dtype,b_dtype", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8),
                                             (np.int8, np.uint8)])
@pytest.mark.parametrize("za_kind,zb_kind", [("none", "none"), ("scalar", "none"), ("scalar", "scalar"),
                                             ("per_row", "per_column"), ("none", "per_column")])
def test_int8_product_is_exact(a_dtype, b_dtype, za_kind, zb_kind):
    """The int8-GEMM product (shifted codes plus row/column-sum corrections) equals the integer
    definition exactly, also at the extreme codes over a long K and for a transposed B."""
    from onnx2x.torch.runtime.quantize import int8_product

    rng = np.random.default_rng(11)
    m, k, n = 5, 4099, 7
    info = np.iinfo(a_dtype), np.iinfo(b_dtype)
    a = rng.integers(info[0].min, info[0].max + 1, (3, m, k)).astype(a_dtype)
    a[0] = info[0].max  # the largest sums the int32 terms must hold
    a[1, :, ::2] = info[0].min
    b = rng.integers(info[1].min, info[1].max + 1, (n, k)).astype(b_dtype).T  # transposed storage
    b[:, 0] = info[1].min
    za = _zero_point(rng, a_dtype, za_kind, m, n)
    zb = _zero_point(rng, b_dtype, zb_kind, m, n)
    expected = (a.astype(np.int64) - (0 if za is None else za.numpy().astype(np.int64).reshape(-1, 1) if za.dim()
                                     else int(za))) @ (b.astype(np.int64) - (0 if zb is None else zb.numpy().astype(np.int64)))
    got = int8_product(torch.from_numpy(a), torch.from_numpy(b), za, zb)
    assert got is not None and got.dtype == torch.int32
    np.testing.assert_array_equal(got.numpy(), expected)
    assert int8_product(torch.from_numpy(a.astype(np.int32)), torch.from_numpy(b), za, zb) is None  # not 8-bit


# --- com.microsoft QuantizeLinear / DequantizeLinear ----------------------------------------------

@pytest.mark.parametrize("np_type,tp_type", [(np.uint8, TP.UINT8), (np.int8, TP.INT8), (np.uint16, TP.UINT16),
                                             (np.int16, TP.INT16)])
@pytest.mark.parametrize("per_axis", [False, True])
def test_ms_quantize_dequantize(np_type, tp_type, per_axis):
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((2, 4, 5)) * 40).astype(np.float32)
    scale = (rng.random(4) * 0.5 + 0.1).astype(np.float32) if per_axis else np.float32(0.3)
    info = np.iinfo(np_type)
    zp = np.full(scale.shape, (info.min + info.max) // 2 + 3, dtype=np_type) if per_axis else np.array((info.min + info.max) // 2 + 3, dtype=np_type)
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], domain=MS, axis=1)
    d = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], domain=MS, axis=1)
    model = ms_model([q, d], [("x", TP.FLOAT, x.shape)], [("q", tp_type, None), ("y", TP.FLOAT, None)],
                     {"s": scale, "z": zp})
    expected = ort_run(model, {"x": x})
    got = torch_run(model, {"x": x})
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


# --- MatMulNBits ------------------------------------------------------------------------------------

def _nbits_model(rng, k, n, bits, block_size, zp_kind, *, accuracy_level=0, bias=False, g_idx=False,
                 a_shape=None, a_type=TP.FLOAT, np_float=np.float32):
    k_blocks = (k + block_size - 1) // block_size
    inits = {"B": rng.integers(0, 256, (n, k_blocks, block_size * bits // 8), dtype=np.uint8),
             "scales": (rng.random(n * k_blocks) * 0.1 + 0.01).astype(np_float)}
    names = ["A", "B", "scales"]
    if zp_kind == "packed":
        inits["zp"] = rng.integers(0, 256, n * ((k_blocks * bits + 7) // 8), dtype=np.uint8)
    elif zp_kind == "float":
        inits["zp"] = (rng.random(n * k_blocks) * 2 ** bits).astype(np_float)
    names.append("zp" if zp_kind != "none" else "")
    if g_idx:
        g = (np.arange(k) // block_size).astype(np.int32)
        rng.shuffle(g)
        inits["g_idx"] = g
    names.append("g_idx" if g_idx else "")
    if bias:
        inits["bias"] = rng.standard_normal(n).astype(np_float)
        names.append("bias")
    while names[-1] == "":
        names.pop()
    node = helper.make_node("MatMulNBits", names, ["Y"], domain=MS, K=k, N=n, bits=bits, block_size=block_size,
                            accuracy_level=accuracy_level)
    a_shape = a_shape or [3, k]
    return ms_model([node], [("A", a_type, a_shape)], [("Y", a_type, None)], inits), inits


@pytest.mark.parametrize("k,n,bits,block_size,zp_kind,accuracy_level,bias", [
    (64, 16, 4, 32, "none", 0, False),
    (64, 16, 4, 32, "packed", 0, True),
    (64, 16, 4, 32, "float", 0, False),
    (70, 12, 4, 32, "packed", 0, False),     # K not a multiple of the block size, odd block count per row
    (96, 8, 4, 16, "packed", 0, False),
    (128, 16, 4, 128, "packed", 0, False),
    (64, 16, 8, 32, "packed", 0, True),
    (64, 16, 2, 16, "packed", 0, False),
    (128, 16, 4, 32, "packed", 4, True),     # accuracy_level 4: onnxruntime quantizes A to int8 per block
    (100, 16, 4, 64, "none", 4, False),
    (128, 16, 8, 32, "packed", 4, False),
])
def test_matmul_nbits(k, n, bits, block_size, zp_kind, accuracy_level, bias):
    rng = np.random.default_rng(11)
    model, _ = _nbits_model(rng, k, n, bits, block_size, zp_kind, accuracy_level=accuracy_level, bias=bias,
                            a_shape=[2, 3, k])
    a = rng.standard_normal((2, 3, k)).astype(np.float32)
    expected = ort_run(model, {"A": a})[0]
    got = torch_run(model, {"A": a})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def test_matmul_nbits_float16():
    rng = np.random.default_rng(12)
    model, _ = _nbits_model(rng, 64, 16, 4, 32, "packed", a_type=TP.FLOAT16, np_float=np.float16)
    a = rng.standard_normal((3, 64)).astype(np.float16)
    expected = ort_run(model, {"A": a})[0]
    got = torch_run(model, {"A": a})[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), rtol=2e-3,
                               atol=2e-3 * float(np.abs(expected).max()))


@pytest.mark.parametrize("zp_kind", ["none", "float"])
def test_matmul_nbits_g_idx_against_onnxruntime(zp_kind):
    rng = np.random.default_rng(13)
    model, _ = _nbits_model(rng, 64, 16, 4, 32, zp_kind, g_idx=True)
    a = rng.standard_normal((3, 64)).astype(np.float32)
    expected = ort_run(model, {"A": a})[0]
    np.testing.assert_allclose(torch_run(model, {"A": a})[0], expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def _unpack4(packed: np.ndarray, count: int) -> np.ndarray:
    return np.stack([packed & 15, packed >> 4], axis=-1).reshape(packed.shape[0], -1)[:, :count].astype(np.float64)


def test_matmul_nbits_g_idx_uint8_zero_points_follow_the_definition():
    """onnxruntime 1.31 ignores uint8 zero points when g_idx is given (its reorder kernel unpacks the
    zero point and never uses it, so 8 applies); onnx2x applies them, as the operator defines."""
    rng = np.random.default_rng(14)
    k, n, bs = 64, 16, 32
    model, inits = _nbits_model(rng, k, n, 4, bs, "packed", g_idx=True)
    a = rng.standard_normal((3, k)).astype(np.float32)
    codes = _unpack4(inits["B"].reshape(n, -1), k)
    zps = _unpack4(inits["zp"].reshape(n, -1), k // bs)
    scales = inits["scales"].reshape(n, -1).astype(np.float64)
    g = inits["g_idx"]
    reference = a.astype(np.float64) @ ((codes - zps[:, g]) * scales[:, g]).T
    got = torch_run(model, {"A": a})[0]
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5 * float(np.abs(reference).max()))
    onnxruntime_result = ort_run(model, {"A": a})[0]
    ignored = a.astype(np.float64) @ ((codes - 8) * scales[:, g]).T
    np.testing.assert_allclose(onnxruntime_result, ignored, rtol=1e-5, atol=1e-5 * float(np.abs(ignored).max()))


def test_matmul_nbits_keeps_weights_packed():
    """The module holds B as the uint8 bytes of the file (no float32 copy of the weight)."""
    rng = np.random.default_rng(15)
    model, inits = _nbits_model(rng, 256, 64, 4, 32, "packed")
    gm = convert(model, simplify=False)
    tensors = dict(gm.state_dict())
    assert any(t.dtype == torch.uint8 and t.numel() == inits["B"].size for t in tensors.values())
    weight_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    assert weight_bytes <= sum(v.nbytes for v in inits.values()), weight_bytes
    assert not any(t.dtype.is_floating_point and t.numel() >= 256 * 64 for t in tensors.values())


# --- QLinearConv with full-range uint8 x int8 operands ---------------------------------------------

def test_qlinear_conv_full_range_is_exact():
    """uint8 activations x int8 weights over their whole range: onnx2x's integer convolution is exact
    (onnx's reference agrees bit for bit). onnxruntime's AVX2 kernels (no VNNI) add pairs of products
    in int16 with saturation and may differ by many steps here; its quantizer's ``reduce_range``
    exists for that reason, and the model tests use it."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(16)
    x = quantize_uniform(rng, (1, 3, 8, 8), np.uint8)
    w = quantize_uniform(rng, (4, 3, 3, 3), np.int8)
    inits = {"xs": np.float32(0.02), "xz": np.uint8(128), "w": w, "ws": np.full(4, 0.01, np.float32),
             "wz": np.zeros(4, np.int8), "ys": np.float32(0.5), "yz": np.uint8(120)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1, 1, 1, 1])
    model = ms_model([node], [("x", TP.UINT8, x.shape)], [("y", TP.UINT8, None)], inits)
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(torch_run(model, {"x": x})[0], expected)


@pytest.mark.parametrize("x_dtype,w_dtype,shape,kernel,groups,stride,dilation,batch", [
    (np.uint8, np.int8, (16, 12, 12), 3, 1, 1, 1, 1),       # one float32 convolution
    (np.uint8, np.int8, (256, 6, 6), 3, 1, 1, 1, 2),        # K = 2304: split into 4-bit halves
    (np.int8, np.uint8, (24, 9, 9), 3, 24, 2, 1, 16),       # depthwise, strided, batch 16
    (np.uint8, np.uint8, (32, 7, 7), 1, 4, 1, 1, 3),        # grouped 1x1
    (np.int8, np.int8, (8, 11, 11), 5, 1, 1, 2, 1),         # dilated 5x5
    (np.uint8, np.int8, (2048, 3, 3), 3, 1, 1, 1, 1),       # K = 18432 at full range: float64
])
def test_qlinear_conv_float32_path_is_exact(x_dtype, w_dtype, shape, kernel, groups, stride, dilation, batch):
    """The float32 convolutions (one, or two over the weights' 4-bit halves) give the integer
    accumulator bit for bit (the float64 product is the reference), including codes at both ends
    of their range; where the bound does not hold the path declines."""
    from onnx2x.torch.runtime import quantize as rq

    rng = np.random.default_rng(17)
    c = shape[0]
    x = rng.integers(np.iinfo(x_dtype).min, np.iinfo(x_dtype).max + 1, (batch,) + shape).astype(x_dtype)
    x[0, :, 0, :] = np.iinfo(x_dtype).max
    w = rng.integers(np.iinfo(w_dtype).min, np.iinfo(w_dtype).max + 1, (c, c // groups, kernel, kernel)).astype(w_dtype)
    w[0] = np.iinfo(w_dtype).min  # a channel at the far end of the range
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    zx, zw = torch.tensor(_zp(x_dtype, 100)), torch.from_numpy(np.full(c, _zp(w_dtype, 131), w_dtype))

    def conv(xv, wv):
        return torch.nn.functional.conv2d(xv, wv, None, stride, kernel // 2, dilation, groups)

    exact = rq._integer_conv_float32(xt, zx, wt, zw, conv)
    expected = conv(rq._centred(xt, zx, torch.float64), rq._centred_weight(wt, zw, torch.float64))
    if shape[0] == 2048:
        assert exact is None
        return
    got, bound = exact
    assert float(got.abs().max()) <= bound and (bound < 2**24 if got.dtype == torch.float32 else got.dtype == torch.int32)
    assert float(expected.abs().max()) > 2**24 or shape[0] < 256  # the large cases exceed float32's exact range
    np.testing.assert_array_equal(got.numpy(), expected.numpy().astype(np.int64))


@pytest.mark.parametrize("x_dtype,w_dtype", [(np.uint8, np.int8), (np.int8, np.uint8), (np.uint8, np.uint8)])
@pytest.mark.parametrize("zw_kind", ["none", "scalar", "per_channel"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_conv_on_the_int8_gemm_is_exact(x_dtype, w_dtype, zw_kind, channels_last, monkeypatch):
    """1x1 convolutions run as the int8 GEMM of pixels by channels: the accumulator equals the
    float64 product bit for bit, for NCHW and channels-last inputs and every weight zero-point form."""
    from onnx2x.torch.runtime import quantize as rq

    monkeypatch.setattr(rq, "_INT8_GEMM_FAST", True)  # the path of CPUs with VNNI, on any CPU

    rng = np.random.default_rng(19)
    x = torch.from_numpy(rng.integers(np.iinfo(x_dtype).min, np.iinfo(x_dtype).max + 1, (2, 48, 9, 7)).astype(x_dtype))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.from_numpy(rng.integers(np.iinfo(w_dtype).min, np.iinfo(w_dtype).max + 1, (20, 48, 1, 1)).astype(w_dtype))
    zx = torch.tensor(_zp(x_dtype, 120))
    zw = {"none": None, "scalar": torch.tensor(_zp(w_dtype, 131)),
          "per_channel": torch.from_numpy(rng.integers(0, 100, 20).astype(w_dtype))}[zw_kind]
    acc, bound = rq._integer_conv(x, zx, w, zw, [1, 1], [0, 0, 0, 0], [1, 1], 1)
    assert acc.dtype == torch.int32 and bound == float("inf")  # the GEMM path, not a float convolution
    expected = torch.nn.functional.conv2d(rq._centred(x, zx, torch.float64), rq._centred_weight(w, zw, torch.float64))
    np.testing.assert_array_equal(acc.numpy(), expected.numpy().astype(np.int64))


@pytest.mark.parametrize("x_dtype,w_dtype", [(np.uint8, np.int8), (np.int8, np.uint8)])
@pytest.mark.parametrize("zw_kind", ["none", "per_channel"])
@pytest.mark.parametrize("geometry", [
    ((3, 3), [1, 1], [1, 1, 1, 1], [1, 1]),
    ((3, 3), [2, 2], [0, 1, 1, 0], [1, 1]),  # asymmetric padding (SAME_UPPER-like), strided
    ((5, 3), [1, 2], [2, 1, 2, 1], [2, 1]),  # rectangular, dilated
    ((1, 1), [2, 2], [0, 0, 0, 0], [1, 1]),  # strided 1x1 (a downsampling shortcut)
], ids=["3x3", "3x3-s2-asym", "5x3-dilated", "1x1-s2"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_convolution_on_the_int8_gemm_is_exact(x_dtype, w_dtype, zw_kind, geometry, channels_last, monkeypatch):
    """Convolutions of any kernel run as the int8 GEMM of their padded patches: the accumulator
    equals the float64 convolution bit for bit (padding holds the input's zero point), and the
    float path takes over, with the same values, where the patch matrix would be too large."""
    from onnx2x.torch.runtime import quantize as rq

    monkeypatch.setattr(rq, "_INT8_GEMM_FAST", True)  # the path of CPUs with VNNI, on any CPU
    kernel, strides, pads, dilations = geometry
    rng = np.random.default_rng(23)
    x = torch.from_numpy(rng.integers(np.iinfo(x_dtype).min, np.iinfo(x_dtype).max + 1, (2, 8, 11, 9)).astype(x_dtype))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.from_numpy(rng.integers(np.iinfo(w_dtype).min, np.iinfo(w_dtype).max + 1, (12, 8) + kernel)
                         .astype(w_dtype))
    zx = torch.tensor(_zp(x_dtype, 101))
    zw = None if zw_kind == "none" else torch.from_numpy(rng.integers(0, 100, 12).astype(w_dtype))
    padded = torch.nn.functional.pad(rq._centred(x, zx, torch.float64), [pads[1], pads[3], pads[0], pads[2]])
    expected = torch.nn.functional.conv2d(padded, rq._centred_weight(w, zw, torch.float64), stride=strides, dilation=dilations)
    acc, bound = rq._integer_conv(x, zx, w, zw, strides, pads, dilations, 1)
    assert acc.dtype == torch.int32 and bound == float("inf")  # the GEMM path
    np.testing.assert_array_equal(acc.numpy(), expected.numpy().astype(np.int64))
    acc_again, _ = rq._integer_conv(x, zx, w, zw, strides, pads, dilations, 1)  # cached weight matrix
    assert torch.equal(acc_again, acc)
    monkeypatch.setattr(rq, "INT8_PATCHES_MAX_BYTES", 0)
    acc, bound = rq._integer_conv(x, zx, w, zw, strides, pads, dilations, 1)
    assert acc.dtype != torch.int32 or bound != float("inf")  # a float convolution
    np.testing.assert_array_equal(acc.to(torch.float64).numpy(), expected.numpy())


def _no_int8_gemm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as on a CPU without VNNI, and fail if torch's int8 GEMM is called anyway."""
    from onnx2x.torch.runtime import quantize as rq

    def refuse(*args, **kwargs):
        raise AssertionError("torch._int_mm called where it is slow")

    monkeypatch.setattr(rq, "_INT8_GEMM_FAST", False)
    monkeypatch.setattr(torch, "_int_mm", refuse)


@pytest.mark.parametrize("a_dtype,b_dtype", [(np.uint8, np.int8), (np.int8, np.uint8)])
@pytest.mark.parametrize("za_kind,zb_kind", [("scalar", "scalar"), ("per_row", "per_column"), ("none", "none")])
@pytest.mark.parametrize("k,extreme", [(96, False), (1500, False), (4099, True)],
                         ids=["float32", "float32-typical-codes", "float64-bound-exceeded"])
def test_products_without_a_fast_int8_gemm_are_exact(a_dtype, b_dtype, za_kind, zb_kind, k, extreme, monkeypatch):
    """Without VNNI the quantized matmuls multiply integers in float32 while every partial sum
    is below 2**24 in magnitude, else in float64: MatMulInteger, QLinearMatMul and the contrib
    matmuls give the integer definition bit for bit, and torch's slow int8 GEMM is not called."""
    from onnx2x.torch.runtime import quantize as rq

    _no_int8_gemm(monkeypatch)
    rng = np.random.default_rng(k)
    m, n = 6, 5
    info = np.iinfo(a_dtype), np.iinfo(b_dtype)
    if extreme:
        a = rng.integers(info[0].min, info[0].max + 1, (2, m, k)).astype(a_dtype)
        a[0] = info[0].max
        b = np.full((k, n), info[1].max if b_dtype == np.uint8 else info[1].min, b_dtype)
    else:  # activations around their zero point, weights of a trained layer's spread
        a = np.clip(rng.normal(0 if a_dtype == np.int8 else 128, 20, (2, m, k)), info[0].min, info[0].max).astype(a_dtype)
        b = np.clip(rng.normal(0 if b_dtype == np.int8 else 128, 12, (k, n)), info[1].min, info[1].max).astype(b_dtype)
    za = _zero_point(rng, a_dtype, za_kind, m, n)
    zb = _zero_point(rng, b_dtype, zb_kind, m, n)
    centred_a = a.astype(np.int64) - (0 if za is None else za.numpy().astype(np.int64).reshape(-1, 1) if za.dim() else int(za))
    centred_b = b.astype(np.int64) - (0 if zb is None else zb.numpy().astype(np.int64))
    expected = centred_a @ centred_b
    fits_float32 = np.abs(centred_a).max() * np.abs(centred_b).sum(0).max() < 2**24
    if za_kind == zb_kind == "none":  # both paths are covered (with random zero points, either)
        assert fits_float32 != extreme
    acc = rq._int_product(torch.from_numpy(a), torch.from_numpy(b), za, zb)
    assert acc.dtype == (torch.float32 if fits_float32 else torch.float64)
    np.testing.assert_array_equal(acc.numpy(), expected)
    got = rq.matmul_integer(torch.from_numpy(a), torch.from_numpy(b), za, zb)
    assert got.dtype == torch.int32
    np.testing.assert_array_equal(got.numpy(), expected)


def test_product_bound_follows_the_weight_and_its_zero_point(monkeypatch):
    """The largest column norm of B - zb is kept per weight: a new zero point or an in-place edit
    of the weight is measured again, so the float32 path is never taken past its bound."""
    from onnx2x.torch.runtime import quantize as rq

    _no_int8_gemm(monkeypatch)
    k = 400
    a = torch.full((2, k), 255, dtype=torch.uint8)
    b = torch.nn.Parameter(torch.full((k, 3), 200, dtype=torch.uint8), requires_grad=False)
    za = torch.tensor(0, dtype=torch.uint8)

    def check(zb: int, dtype: torch.dtype) -> None:
        acc = rq._int_product(a, b, za, torch.tensor(zb, dtype=torch.uint8))
        assert acc.dtype == dtype
        expected = (a.to(torch.int64) @ (b.detach().to(torch.int64) - zb)).numpy()
        np.testing.assert_array_equal(acc.to(torch.float64).numpy(), expected)

    check(200, torch.float32)  # B - zb = 0: bound 0
    check(0, torch.float64)    # 255 * 400 * 200 > 2**24
    check(200, torch.float32)
    with torch.no_grad():
        b[0, 0] = 0             # in place: column 0 now sums to 200, still within the bound
    check(200, torch.float32)
    with torch.no_grad():
        b.fill_(0)              # |B - zb| = 200 everywhere: past the bound
    check(200, torch.float64)


def test_convolution_without_a_fast_int8_gemm_is_exact(monkeypatch):
    """Without VNNI a QLinearConv convolves the integers in float32 (its weights split into 4-bit
    halves where one float32 sum could round): the same accumulator as the float64 definition."""
    from onnx2x.torch.runtime import quantize as rq

    _no_int8_gemm(monkeypatch)
    rng = np.random.default_rng(29)
    x = torch.from_numpy(rng.integers(0, 256, (1, 64, 9, 9)).astype(np.uint8)).contiguous(memory_format=torch.channels_last)
    zx = torch.tensor(np.uint8(128))
    for w_codes in (rng.integers(-20, 21, (16, 64, 3, 3)), rng.integers(-128, 128, (16, 64, 3, 3))):
        w = torch.from_numpy(w_codes.astype(np.int8))
        expected = torch.nn.functional.conv2d(rq._centred(x, zx, torch.float64), rq._centred_weight(w, None, torch.float64),
                                              padding=1)
        acc, _ = rq._integer_conv(x, zx, w, None, [1, 1], [1, 1, 1, 1], [1, 1], 1)
        np.testing.assert_array_equal(acc.to(torch.float64).numpy(), expected.numpy())


def test_int8_gemm_is_used_only_where_the_cpu_has_int8_dot_products(monkeypatch):
    from onnx2x.torch.runtime import quantize as rq

    monkeypatch.setattr(rq, "_INT8_GEMM_FAST", None)
    expected = bool(torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported())
    assert rq.int8_gemm_is_fast() is expected
    assert rq._INT8_GEMM_FAST is expected  # decided once


# --- refusals at conversion time --------------------------------------------------------------------

def test_unsupported_attribute_combinations_are_refused_at_conversion():
    rng = np.random.default_rng(17)
    model, _ = _nbits_model(rng, 64, 16, 4, 32, "none")
    model.graph.node[0].attribute[[a.name for a in model.graph.node[0].attribute].index("bits")].i = 3
    with pytest.raises(UnsupportedOpError, match="bits=3"):
        convert(model, simplify=False)
    node = helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"], domain=MS)
    inits = {"sa": np.full(4, 0.1, np.float32), "za": np.uint8(1), "sb": np.float32(0.1), "zb": np.uint8(2),
             "sc": np.float32(0.1), "zc": np.uint8(3)}
    model = ms_model([node], [("a", TP.UINT8, [2, 4]), ("b", TP.UINT8, [2, 4])], [("c", TP.UINT8, None)], inits)
    with pytest.raises(ConversionError) as info:
        convert(model, simplify=False)
    assert "QLinearAdd" in str(info.value) and "per-tensor" in str(info.value)


def test_quantize_and_dequantize_leave_their_inputs_and_autograd_alone():
    """They now compute in place on their fresh intermediates (a batch of feature maps: 6x less
    time): the caller's tensors must not change, and a float input that requires grad (a
    trainable conversion of a QDQ graph) must not hit an in-place error."""
    from onnx2x.torch.runtime import quantize as rt

    x = torch.linspace(-3, 3, 24).reshape(2, 3, 4)
    scale, zero_point = torch.tensor(0.05), torch.tensor(128, dtype=torch.uint8)
    kept = x.clone()
    q = rt.quantize(x, scale, zero_point, 1, 0, torch.uint8, True)
    assert torch.equal(x, kept)
    want = torch.clamp(torch.round(x / scale) + 128, 0, 255).to(torch.uint8)
    assert torch.equal(q, want)
    codes = q.clone()
    back = rt.dequantize(q, scale, zero_point, 1, 0, torch.float32)
    assert torch.equal(q, codes)
    assert torch.equal(back, (q.to(torch.float32) - 128) * scale)
    same = rt.dequantize(x, torch.tensor(1.0), None, 1, 0, torch.float32)  # float input: no copy made
    assert torch.equal(x, kept) and torch.equal(same, x)
    leaf = x.clone().requires_grad_(True)
    rt.quantize(leaf, scale, zero_point, 1, 0, torch.uint8, True)
    rt.dequantize(leaf, torch.tensor(2.0), None, 1, 0, torch.float32).sum().backward()
    assert torch.equal(leaf.grad, torch.full_like(x, 2.0))
