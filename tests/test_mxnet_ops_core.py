"""Core layers of real MXNet networks (MTCNN, model-zoo ResNets) against MXNet's own forward:
PReLU on every input rank, SoftmaxActivation and the loss heads, BatchNorm's ``fix_gamma``,
Pooling conventions (``full`` on odd sizes, ``same``, global, ``count_include_pad``) and
SliceChannel outputs wired by index."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.support.mxnet_ops import check_export, mx, mxnet_forward, node_types, onnx_forward, rand, random_params

data = mx.sym.var("data")


def test_one_translation_per_op():
    """Each repaired op has a single replacement, which hands the cases it leaves to MXNet's own."""
    import mx2onnx_patches
    from mx2onnx_patches import translations

    mx2onnx_patches.import_op_modules()
    names = [name for name, _, _ in translations.registered()]
    for op in ("LeakyReLU", "BatchNorm", "Pooling", "SoftmaxOutput", "SoftmaxActivation", "SliceChannel"):
        assert names.count(op) == 1, op


# -- PReLU --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 5), (2, 3, 4, 5), (1, 3, 2, 3, 4)])
def test_prelu_slope_on_the_channel_axis_for_every_rank(shape):
    # the last dim differs from C (except 2-D): a slope broadcast from the right would not even fit
    sym = mx.sym.LeakyReLU(data, act_type="prelu", name="prelu")
    model = check_export(sym, {"data": rand(*shape, low=-2, high=2)})
    assert "PRelu" in node_types(model)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 5), (1, 2, 3, 3, 2)])
def test_prelu_single_shared_slope(shape):
    # the shared slope is computed from an input: x2onnx/mxnet/loading.py refuses a stored (1,)
    # gamma (it expects MXNet's inferred (C,)) and wants any gamma argument to be a parameter
    slope = mx.sym.identity(mx.sym.var("slope"), name="shared_slope")
    sym = mx.sym.LeakyReLU(data, gamma=slope, act_type="prelu", name="prelu")
    check_export(sym, {"data": rand(*shape, low=-2, high=2), "slope": np.array([0.3], np.float32)})


def test_prelu_after_convolution_and_after_fully_connected():
    """MTCNN's pattern: the same op on a 4-D feature map and on a 2-D dense output."""
    x = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, name="conv")
    x = mx.sym.LeakyReLU(x, act_type="prelu", name="prelu1")
    x = mx.sym.FullyConnected(x, num_hidden=6, name="fc")
    sym = mx.sym.LeakyReLU(x, act_type="prelu", name="prelu2")
    check_export(sym, {"data": rand(2, 3, 7, 5)}, atol=1e-5)


@pytest.mark.parametrize("opset", [12, 18])
def test_prelu_other_opsets(opset):
    sym = mx.sym.LeakyReLU(data, act_type="prelu", name="prelu")
    check_export(sym, {"data": rand(2, 3, 4, 5, low=-2, high=2)}, opset=opset)


# -- SoftmaxActivation and loss heads -----------------------------------------------------------

@pytest.mark.parametrize("mode, shape", [("instance", (3, 5)), ("instance", (2, 3, 4)), ("instance", (2, 3, 4, 5)),
                                         ("channel", (2, 3, 4)), ("channel", (2, 3, 4, 5)),
                                         ("channel", (1, 3, 2, 3, 4))])
def test_softmax_activation(mode, shape):
    """'instance' is a softmax over the last axis (MXNet flattens the rest into instances);
    'channel' over axis 1 (MXNet wants 3 dims at least)."""
    sym = mx.sym.SoftmaxActivation(data, mode=mode, name="prob")
    check_export(sym, {"data": rand(*shape, low=-3, high=3)})


@pytest.mark.parametrize("opset", [12, 18])
@pytest.mark.parametrize("mode", ["instance", "channel"])
def test_softmax_activation_other_opsets(mode, opset):
    sym = mx.sym.SoftmaxActivation(data, mode=mode, name="prob")
    check_export(sym, {"data": rand(2, 3, 4, 5, low=-3, high=3)}, opset=opset)


def test_softmax_activation_mode_omitted_is_instance():
    sym = mx.sym.SoftmaxActivation(data, name="prob")
    assert "mode" not in sym.tojson()
    check_export(sym, {"data": rand(2, 3, 4, low=-3, high=3)})


def _mkldnn_softmax_output_ok(kwargs, shape) -> bool:
    """MXNet's MKL-DNN kernel takes a default SoftmaxOutput of a 4-D input over the last axis, not
    over the flattened instance as the operator (and MXNet's own kernel) defines: compare those."""
    return bool(kwargs) or len(shape) != 4


@pytest.mark.parametrize("kwargs", [dict(), dict(multi_output=True), dict(preserve_shape=True),
                                    dict(multi_output=True, preserve_shape=True)])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (2, 3, 4, 5)])
def test_softmax_output_axes(kwargs, shape):
    sym = mx.sym.SoftmaxOutput(data, name="prob1", **kwargs)
    model = check_export(sym, {"data": rand(*shape, low=-3, high=3)}, mkldnn=_mkldnn_softmax_output_ok(kwargs, shape))
    assert [i.name for i in model.graph.input] == ["data"]  # prob1_label is left out


@pytest.mark.parametrize("opset", [12, 18])
@pytest.mark.parametrize("kwargs", [dict(), dict(multi_output=True), dict(preserve_shape=True)])
def test_softmax_output_other_opsets(kwargs, opset):
    sym = mx.sym.SoftmaxOutput(data, name="prob1", **kwargs)
    check_export(sym, {"data": rand(2, 3, 4, 5, low=-3, high=3)}, opset=opset,
                 mkldnn=_mkldnn_softmax_output_ok(kwargs, (2, 3, 4, 5)))


def test_softmax_output_with_a_named_label_and_training_attributes():
    label = mx.sym.var("softmax_label")
    sym = mx.sym.SoftmaxOutput(data, label, use_ignore=True, ignore_label=0, normalization="valid",
                               smooth_alpha=0.1, grad_scale=3.0, name="prob1")
    model = check_export(sym, {"data": rand(4, 6, low=-3, high=3)})
    assert [i.name for i in model.graph.input] == ["data"]


@pytest.mark.parametrize("head", ["LogisticRegressionOutput", "MAERegressionOutput", "LinearRegressionOutput",
                                  "SVMOutput"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4)])
def test_loss_heads_at_inference(head, shape):
    fc = mx.sym.FullyConnected(data, num_hidden=int(np.prod(shape[1:])), name="fc")
    pred = mx.sym.Reshape(fc, shape=(-1,) + shape[1:], name="pred")
    sym = getattr(mx.sym, head)(pred, name="out")
    assert "out_label" in sym.list_arguments()
    model = check_export(sym, {"data": rand(shape[0], 5, low=-2, high=2)})
    assert [i.name for i in model.graph.input] == ["data"]
    assert [o.name for o in model.graph.output] == ["out"]


def test_several_heads_with_labels_keep_inputs_and_outputs_in_order():
    """det3's layout: three heads, each with its own label argument between the real inputs."""
    other = mx.sym.var("other")
    prob = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(data, num_hidden=2, name="fc1"), name="prob1")
    box = mx.sym.LinearRegressionOutput(mx.sym.FullyConnected(data, num_hidden=4, name="fc2"), name="box")
    mark = mx.sym.MAERegressionOutput(mx.sym.FullyConnected(other, num_hidden=3, name="fc3"), name="mark")
    sym = mx.sym.Group([box, prob, mark])
    model = check_export(sym, {"data": rand(3, 5), "other": rand(3, 2, seed=4)})
    assert [i.name for i in model.graph.input] == ["data", "other"]
    assert [o.name for o in model.graph.output] == ["box", "prob1", "mark"]


# -- BatchNorm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 5), (1, 3, 2, 3, 4)])
def test_batchnorm_fix_gamma_omitted_ignores_the_stored_gamma(shape):
    """MXNet's default is fix_gamma=True: gamma counts as ones at inference, whatever is stored."""
    sym = mx.sym.BatchNorm(data, name="bn")
    assert "fix_gamma" not in sym.tojson()
    params = random_params(sym, {"data": rand(*shape)})
    params["bn_gamma"] = np.full_like(params["bn_gamma"], 3.0)  # far from the ones MXNet uses
    check_export(sym, {"data": rand(*shape, low=-3, high=3)}, params=params)


@pytest.mark.parametrize("axis", [1, -1, 2])
@pytest.mark.parametrize("fix_gamma", [True, False])
def test_batchnorm_fix_gamma_on_every_axis(axis, fix_gamma):
    sym = mx.sym.BatchNorm(data, axis=axis, fix_gamma=fix_gamma, eps=2e-5, name="bn")
    check_export(sym, {"data": rand(2, 3, 4, 5, low=-3, high=3)})


def test_batchnorm_use_global_stats_and_momentum_do_not_change_inference():
    sym = mx.sym.BatchNorm(data, use_global_stats=True, momentum=0.5, fix_gamma=False, name="bn")
    check_export(sym, {"data": rand(2, 3, 4, 4)})


# -- Pooling ------------------------------------------------------------------------------------

def _pool(**kwargs):
    return mx.sym.Pooling(data, name="pool", **kwargs)


@pytest.mark.parametrize("size", [12, 13])
@pytest.mark.parametrize("kernel, stride", [(3, 2), (2, 2)])
@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("pool_type, include_pad", [("max", None), ("avg", True), ("avg", False)])
@pytest.mark.parametrize("convention", ["full", "valid"])
def test_pooling_odd_and_even_sizes(size, kernel, stride, pad, pool_type, include_pad, convention):
    kwargs = dict(kernel=(kernel, kernel), stride=(stride, stride), pad=(pad, pad), pool_type=pool_type,
                  pooling_convention=convention)
    if include_pad is not None:
        kwargs["count_include_pad"] = include_pad
    check_export(_pool(**kwargs), {"data": rand(2, 3, size, size + 1, low=-3, high=3)})


def test_pooling_full_uses_ceil_mode():
    model = check_export(_pool(kernel=(3, 3), stride=(2, 2), pooling_convention="full"), {"data": rand(1, 2, 13, 13)})
    pool = next(n for n in model.graph.node if n.op_type == "MaxPool")
    assert onnx.helper.get_attribute_value(next(a for a in pool.attribute if a.name == "ceil_mode")) == 1


_AWKWARD_FULL = [
    (2, 2, 1, 3),   # the last window starts in the right padding (onnxruntime's ceil_mode drops it)
    (2, 2, 1, 6),
    (1, 2, 0, 4),   # stride > kernel: the last window lies wholly past the input
    (3, 2, 2, 5),   # pad + stride > kernel
    (2, 1, 1, 4),
    (3, 3, 2, 7),
]
_POOL_KINDS = [("max", None), ("avg", True), ("avg", False), ("sum", None)]


@pytest.mark.parametrize("pool_type, include_pad, kernel, stride, pad, size", [
    (t, inc, k, s, p, x) for t, inc in _POOL_KINDS for k, s, p, x in _AWKWARD_FULL
    # an avg window wholly past the input: MXNet divides by a non-positive size there
    if not (t == "avg" and k < s)])
def test_pooling_full_where_ceil_mode_differs(pool_type, include_pad, kernel, stride, pad, size):
    kwargs = dict(kernel=(kernel, kernel), stride=(stride, stride), pad=(pad, pad), pool_type=pool_type,
                  pooling_convention="full")
    if include_pad is not None:
        kwargs["count_include_pad"] = include_pad
    check_export(_pool(**kwargs), {"data": rand(1, 2, size, size + 2, low=-3, high=3)})


@pytest.mark.parametrize("pool_type, include_pad", _POOL_KINDS)
@pytest.mark.parametrize("layout", ["1d", "3d"])
def test_pooling_full_1d_and_3d(pool_type, include_pad, layout):
    if layout == "1d":
        kwargs, shape = dict(kernel=(3,), stride=(2,), pad=(1,)), (2, 3, 11)
    else:
        kwargs, shape = dict(kernel=(2, 3, 3), stride=(2, 2, 2), pad=(0, 1, 1)), (1, 2, 5, 7, 6)
    if include_pad is not None:
        kwargs["count_include_pad"] = include_pad
    check_export(_pool(pool_type=pool_type, pooling_convention="full", **kwargs),
                 {"data": rand(*shape, low=-3, high=3)})


@pytest.mark.parametrize("pool_type", ["max", "avg", "sum"])
def test_pooling_same(pool_type):
    """out = ceil(x / s), windows from 0 cut at the input's end (avg divides by what is inside)."""
    # MXNet 1.9.1 takes 'same' only for 1-D and wants a 3-element zero pad; MKL-DNN refuses most
    # 'same' pools, MXNet's own kernel runs them (one subprocess for all six geometries)
    pools = [mx.sym.Pooling(data, kernel=(k,), stride=(s,), pad=(0, 0, 0), pool_type=pool_type,
                            pooling_convention="same", name=f"pool_k{k}_s{s}")
             for k, s in [(3, 2), (2, 2), (4, 2), (3, 3), (1, 2), (3, 1)]]
    check_export(mx.sym.Group(pools), {"data": rand(2, 3, 7, low=-3, high=3)}, mkldnn=False)


@pytest.mark.parametrize("pool_type", ["max", "avg", "sum"])
@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 5, 4), (1, 2, 3, 4, 5)])
def test_pooling_global(pool_type, shape):
    sym = _pool(kernel=(1,) * (len(shape) - 2), global_pool=True, pool_type=pool_type)
    check_export(sym, {"data": rand(*shape, low=-3, high=3)})


def test_pooling_avg_count_include_pad_omitted_means_true():
    sym = _pool(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg")
    assert "count_include_pad" not in sym.tojson()
    check_export(sym, {"data": rand(1, 2, 7, 6)})


@pytest.mark.parametrize("opset", [12, 18])
def test_pooling_other_opsets(opset):
    x = _pool(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg", pooling_convention="full",
              count_include_pad=False)
    x = mx.sym.Pooling(x, kernel=(2, 2), stride=(2, 2), pad=(1, 1), pool_type="max", pooling_convention="full",
                       name="pool2")
    check_export(x, {"data": rand(1, 2, 13, 11)}, opset=opset)


def _build_with_free_spatial_dims(sym, shape):
    from mx2onnx_patches import apply
    from mx2onnx_patches.graph_builder import build_graph

    with apply():
        result = build_graph(sym, {}, {"data": shape}, dynamic_input_shapes={"data": (None, shape[1], None, None)})
    return onnx.helper.make_model(result.graph, opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("kwargs", [
    dict(kernel=(3, 3), stride=(2, 2), pool_type="max"),
    dict(kernel=(2, 2), stride=(2, 2), pad=(1, 1), pool_type="max"),
    dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg"),
    dict(kernel=(2, 2), stride=(2, 2), pad=(1, 1), pool_type="avg"),
    dict(kernel=(2, 2), stride=(2, 2), pad=(1, 1), pool_type="avg", count_include_pad=False),
])
def test_pooling_full_does_not_freeze_the_export_size(kwargs):
    """MTCNN's P-Net runs on an image pyramid: one export must serve every input size."""
    sym = _pool(pooling_convention="full", **kwargs)
    model = _build_with_free_spatial_dims(sym, (1, 2, 12, 12))
    for size in [(13, 13), (12, 17), (9, 10), (24, 31)]:
        x = {"data": rand(1, 2, *size, low=-3, high=3)}
        expected = mxnet_forward(sym, {}, x)[0]
        got = onnx_forward(model, x)[0]
        assert got.shape == expected.shape, size
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# -- SliceChannel / split -----------------------------------------------------------------------

@pytest.mark.parametrize("num_outputs", [2, 3, 4, 5])
@pytest.mark.parametrize("squeeze", [False, True])
def test_slice_channel_outputs_consumed_separately_out_of_order(num_outputs, squeeze):
    parts = mx.sym.SliceChannel(data, num_outputs=num_outputs, axis=1, squeeze_axis=squeeze, name="slice")
    order = [num_outputs - 1] + list(range(num_outputs - 1))  # the last output first
    heads = [mx.sym.elemwise_mul(parts[i], parts[i] + float(i), name=f"scaled{i}") for i in order]
    if num_outputs > 2:
        heads.append(mx.sym.broadcast_sub(parts[1], parts[num_outputs - 1], name="diff"))
    sym = mx.sym.Group(heads)
    model = check_export(sym, {"data": rand(2, num_outputs, 3)})
    assert [o.name for o in model.graph.output][:num_outputs] == [f"scaled{i}" for i in order]


@pytest.mark.parametrize("axis", [0, 2, -1])
@pytest.mark.parametrize("squeeze", [False, True])
def test_slice_channel_other_axes(axis, squeeze):
    shape = (3, 2, 3, 4)
    count = shape[axis] if squeeze else {0: 3, 2: 3, -1: 2}[axis]
    parts = mx.sym.SliceChannel(data, num_outputs=count, axis=axis, squeeze_axis=squeeze, name="slice")
    sym = mx.sym.Group([parts[i] for i in reversed(range(count))])
    check_export(sym, {"data": rand(*shape)})


def test_slice_channel_single_output_consumed_alone():
    parts = mx.sym.split(data, num_outputs=4, axis=1, name="split")
    sym = mx.sym.relu(parts[2], name="y")  # the other three outputs go nowhere
    check_export(sym, {"data": rand(2, 8, 3, low=-1, high=1)})


@pytest.mark.parametrize("opset", [12, 18])
@pytest.mark.parametrize("squeeze", [False, True])
def test_slice_channel_other_opsets(opset, squeeze):
    parts = mx.sym.SliceChannel(data, num_outputs=3, axis=1, squeeze_axis=squeeze, name="slice")
    sym = mx.sym.Group([parts[2], parts[0] + parts[1]])
    check_export(sym, {"data": rand(2, 3, 4)}, opset=opset)


def test_slice_channel_keeps_the_batch_dynamic():
    from x2onnx.mxnet import export

    parts = mx.sym.SliceChannel(data, num_outputs=2, axis=1, squeeze_axis=True, name="slice")
    sym = mx.sym.Group([parts[1], parts[0]])
    model = export(sym, {}, {"data": (1, 2, 5)}, dynamic_batch=True, simplify=False, verify=False)
    x = {"data": rand(4, 2, 5)}
    for got, expected in zip(onnx_forward(model, x), mxnet_forward(sym, {}, x)):
        np.testing.assert_array_equal(got, expected)

