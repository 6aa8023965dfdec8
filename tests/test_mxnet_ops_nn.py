"""MXNet -> ONNX layer translations (mx2onnx_patches/ops_nn.py) against MXNet's own forward."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.mxnet_ops import check_export, mx, node_types, rand

data = mx.sym.var("data")


# -- LRN ---------------------------------------------------------------------------------------

def test_lrn_default_knorm_is_two():
    sym = mx.sym.LRN(data, nsize=3, name="lrn")
    assert "knorm" not in sym.tojson()
    check_export(sym, {"data": rand(1, 6, 4, 4, low=-3, high=3)})


def test_lrn_explicit_attributes():
    sym = mx.sym.LRN(data, nsize=5, alpha=0.01, beta=0.5, knorm=1.5, name="lrn")
    check_export(sym, {"data": rand(2, 7, 3, 3, low=-3, high=3)})


# -- FullyConnected / Embedding -----------------------------------------------------------------

def test_fully_connected_flatten_default_on_4d_input():
    sym = mx.sym.FullyConnected(data, num_hidden=5, name="fc")
    assert "flatten" not in sym.tojson()
    model = check_export(sym, {"data": rand(2, 3, 4, 4)})
    assert "Gemm" in node_types(model)


def test_fully_connected_no_flatten_on_4d_input():
    sym = mx.sym.FullyConnected(data, num_hidden=5, flatten=False, name="fc")
    check_export(sym, {"data": rand(2, 3, 4, 6)})


def test_fully_connected_no_bias():
    sym = mx.sym.FullyConnected(data, num_hidden=4, no_bias=True, flatten=False, name="fc")
    check_export(sym, {"data": rand(3, 6)})


def test_embedding_then_fully_connected():
    emb = mx.sym.Embedding(data, input_dim=10, output_dim=4, name="emb")
    sym = mx.sym.FullyConnected(emb, num_hidden=3, name="fc")
    indices = np.array([[1, 9, 0], [4, 4, 7]], dtype=np.float32)
    check_export(sym, {"data": indices})


def test_embedding_then_fully_connected_no_flatten():
    emb = mx.sym.Embedding(data, input_dim=10, output_dim=4, name="emb")
    sym = mx.sym.FullyConnected(emb, num_hidden=3, flatten=False, name="fc")
    indices = np.array([[1, 9, 0], [4, 4, 7]], dtype=np.float32)
    check_export(sym, {"data": indices})


# -- Deconvolution ------------------------------------------------------------------------------

def test_deconvolution_no_bias_omitted_defaults_true():
    sym = mx.sym.Deconvolution(data, kernel=(3, 3), num_filter=4, stride=(2, 2), pad=(1, 1), name="deconv")
    assert "no_bias" not in sym.tojson()
    check_export(sym, {"data": rand(1, 3, 5, 5)}, atol=1e-4)


def test_deconvolution_with_bias_and_adj():
    sym = mx.sym.Deconvolution(data, kernel=(3, 3), num_filter=2, stride=(2, 2), pad=(1, 1), adj=(1, 1),
                               no_bias=False, name="deconv")
    check_export(sym, {"data": rand(1, 3, 4, 5)}, atol=1e-4)


def test_deconvolution_target_shape():
    # MXNet's MKL-DNN kernel refuses padded target_shape deconvolutions ("could not create a
    # descriptor"); the reference comes from MXNet's own kernel with MKL-DNN off (one subprocess,
    # so both shapes -- even and odd padding -- share one graph).
    even = mx.sym.Deconvolution(data, kernel=(4, 4), num_filter=2, stride=(2, 2), target_shape=(10, 10),
                                name="deconv_even")
    odd = mx.sym.Deconvolution(data, kernel=(4, 4), num_filter=2, stride=(2, 2), target_shape=(9, 11),
                               name="deconv_odd")
    check_export(mx.sym.Group([even, odd]), {"data": rand(1, 3, 5, 5)}, atol=1e-4, mkldnn=False)


def test_deconvolution_grouped_dilated():
    sym = mx.sym.Deconvolution(data, kernel=(3, 3), num_filter=4, num_group=2, dilate=(2, 2), no_bias=False,
                               name="deconv")
    check_export(sym, {"data": rand(1, 4, 4, 4)}, atol=1e-4)


# -- BatchNorm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [-1, 2])
def test_batchnorm_other_axis(axis):
    sym = mx.sym.BatchNorm(data, axis=axis, fix_gamma=False, eps=1e-3, name="bn")
    check_export(sym, {"data": rand(2, 3, 4, 5)}, atol=1e-5)


def test_batchnorm_other_axis_fix_gamma_default():
    sym = mx.sym.BatchNorm(data, axis=3, name="bn")
    check_export(sym, {"data": rand(2, 3, 4, 5)}, atol=1e-5)


# -- Pooling / adaptive pooling -----------------------------------------------------------------

@pytest.mark.parametrize("convention", ["valid", "full"])
def test_pooling_sum(convention):
    sym = mx.sym.Pooling(data, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="sum",
                         pooling_convention=convention, name="pool")
    check_export(sym, {"data": rand(1, 3, 6, 7)}, atol=1e-5)


def test_pooling_sum_global():
    sym = mx.sym.Pooling(data, kernel=(1, 1), global_pool=True, pool_type="sum", name="pool")
    check_export(sym, {"data": rand(2, 3, 5, 4)}, atol=1e-5)


@pytest.mark.parametrize("size", [(2, 3), (3, 3), 4])
def test_adaptive_avg_pooling(size):
    sym = mx.sym.contrib.AdaptiveAvgPooling2D(data, output_size=size, name="pool")
    check_export(sym, {"data": rand(2, 3, 7, 6)})


def test_adaptive_avg_pooling_equal_bins_uses_average_pool():
    sym = mx.sym.contrib.AdaptiveAvgPooling2D(data, output_size=(2, 3), name="pool")
    model = check_export(sym, {"data": rand(1, 2, 4, 6)})
    assert "AveragePool" in node_types(model)


# -- resizing -----------------------------------------------------------------------------------

def test_upsampling_bilinear():
    sym = mx.sym.UpSampling(data, scale=2, sample_type="bilinear", num_filter=3, name="up")
    check_export(sym, {"data": rand(1, 3, 4, 5)}, atol=1e-5)


def test_upsampling_bilinear_odd_scale():
    sym = mx.sym.UpSampling(data, scale=3, sample_type="bilinear", num_filter=2, name="up")
    check_export(sym, {"data": rand(1, 2, 3, 4)}, atol=1e-5)


@pytest.mark.parametrize("scale", [2, 3])
def test_upsampling_nearest(scale):
    sym = mx.sym.UpSampling(data, scale=scale, sample_type="nearest", name="up")
    check_export(sym, {"data": rand(1, 2, 3, 4)})


# -- Crop ---------------------------------------------------------------------------------------

def test_crop_center():
    sym = mx.sym.Crop(data, h_w=(3, 4), center_crop=True, name="crop")
    check_export(sym, {"data": rand(1, 2, 8, 7)})


def test_crop_center_like():
    like = mx.sym.var("like")
    sym = mx.sym.Crop(data, like, center_crop=True, num_args=2, name="crop")
    check_export(sym, {"data": rand(1, 2, 9, 6), "like": rand(1, 1, 4, 3)})


def test_crop_offset():
    sym = mx.sym.Crop(data, h_w=(2, 3), offset=(1, 2), name="crop")
    check_export(sym, {"data": rand(1, 2, 5, 6)})


# -- normalisation ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["instance", "spatial", "channel"])
def test_l2_normalization(mode):
    sym = mx.sym.L2Normalization(data, mode=mode, name="l2")
    check_export(sym, {"data": rand(2, 3, 4, 5)})


def test_l2_normalization_eps_matters():
    sym = mx.sym.L2Normalization(data, mode="instance", eps=0.5, name="l2")
    check_export(sym, {"data": rand(2, 3, 2, low=-0.2, high=0.2)})


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_group_norm(groups):
    sym = mx.sym.GroupNorm(data, num_groups=groups, name="gn")
    check_export(sym, {"data": rand(2, 4, 3, 5)}, atol=1e-5)


# -- spatial transformer ------------------------------------------------------------------------

def test_grid_generator_affine():
    sym = mx.sym.GridGenerator(data, transform_type="affine", target_shape=(4, 5), name="grid")
    check_export(sym, {"data": rand(2, 6)})


def test_grid_generator_warp():
    sym = mx.sym.GridGenerator(data, transform_type="warp", name="grid")
    check_export(sym, {"data": rand(2, 2, 4, 5, low=-2, high=2)})


def test_bilinear_sampler_with_affine_grid():
    theta = mx.sym.var("theta")
    grid = mx.sym.GridGenerator(theta, transform_type="affine", target_shape=(5, 6), name="grid")
    sym = mx.sym.BilinearSampler(data, grid, name="sampler")
    # a zoom-out with a shift sends part of the grid outside the image (zero padding there)
    affine = np.array([[1.3, 0.2, 0.3, -0.1, 1.2, -0.2], [0.8, 0.0, 0.0, 0.0, 0.8, 0.0]], dtype=np.float32)
    check_export(sym, {"data": rand(2, 3, 4, 7), "theta": affine}, atol=1e-5)


def test_bilinear_sampler_with_raw_grid():
    grid = mx.sym.var("grid")
    sym = mx.sym.BilinearSampler(data, grid, name="sampler")
    check_export(sym, {"data": rand(1, 2, 5, 4), "grid": rand(1, 2, 3, 6, seed=3, low=-1.3, high=1.3)},
                 atol=1e-5)


# -- MultiBoxPrior ------------------------------------------------------------------------------

def test_multibox_prior_defaults():
    check_export(mx.sym.contrib.MultiBoxPrior(data, name="anchors"), {"data": rand(1, 3, 4, 5)}, atol=1e-6)


def test_multibox_prior_sizes_ratios_clip_steps():
    sym = mx.sym.contrib.MultiBoxPrior(data, sizes=(0.5, 0.25, 0.1), ratios=(1, 2, 0.5), clip=True,
                                       steps=(0.2, 0.25), offsets=(0.4, 0.6), name="anchors")
    check_export(sym, {"data": rand(1, 3, 5, 4)}, atol=1e-6)


def test_embedding_clips_out_of_range_indices_like_mxnet():
    sym = mx.sym.Embedding(data, input_dim=4, output_dim=3, name="emb")
    check_export(sym, {"data": np.array([[-2, 5, 1.7], [3.9, -0.5, 0]], dtype=np.float32)})


# -- cases handed down the chain -----------------------------------------------------------------

def test_batchnorm_axis_one_still_exported():
    sym = mx.sym.BatchNorm(data, fix_gamma=False, name="bn")
    check_export(sym, {"data": rand(2, 3, 4, 5)})


@pytest.mark.parametrize("momentum", [0.9, 0.8])
def test_batchnorm_momentum_is_kept_for_training_after_conversion(momentum):
    sym = mx.sym.BatchNorm(data, fix_gamma=False, momentum=momentum, name="bn")
    model = check_export(sym, {"data": rand(2, 3, 4, 5)})
    (node,) = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    (attr,) = [a for a in node.attribute if a.name == "momentum"]
    assert attr.f == pytest.approx(momentum)


def test_pooling_max_still_exported():
    sym = mx.sym.Pooling(data, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool")
    check_export(sym, {"data": rand(1, 2, 4, 6)})


# -- newer opsets: forms that change across opsets (Reduce* axes, Split, Squeeze, Resize) -------

@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("case", ["group_norm", "l2_spatial", "sampler", "resize", "adaptive"])
def test_translations_valid_at_newer_opsets(case, opset):
    if case == "group_norm":
        sym, inputs = mx.sym.GroupNorm(data, num_groups=2, name="gn"), {"data": rand(2, 4, 3, 3)}
    elif case == "l2_spatial":
        sym, inputs = mx.sym.L2Normalization(data, mode="spatial", name="l2"), {"data": rand(2, 3, 4)}
    elif case == "sampler":
        grid = mx.sym.var("grid")
        sym = mx.sym.BilinearSampler(data, grid, name="sampler")
        inputs = {"data": rand(1, 2, 4, 4), "grid": rand(1, 2, 3, 3, seed=4)}
    elif case == "resize":
        sym = mx.sym.contrib.BilinearResize2D(data, height=5, width=7, align_corners=False, name="resize")
        inputs = {"data": rand(1, 2, 3, 4)}
    else:
        sym = mx.sym.contrib.AdaptiveAvgPooling2D(data, output_size=(2, 3), name="pool")
        inputs = {"data": rand(1, 2, 5, 7)}
    check_export(sym, inputs, opset=opset)


def test_static_shape_translations_keep_batch_dynamic():
    """Translations that read export-time shapes use only non-batch dims: run at another batch size."""
    from tests.support.mxnet_ops import mxnet_forward, onnx_forward, random_params
    from x2onnx.mxnet import export

    grid = mx.sym.GridGenerator(mx.sym.var("theta"), transform_type="affine", target_shape=(4, 4), name="grid")
    x = mx.sym.Pooling(data, kernel=(2, 2), pool_type="sum", name="pool")
    x = mx.sym.contrib.AdaptiveAvgPooling2D(x, output_size=(3, 2), name="adaptive")
    x = mx.sym.contrib.BilinearResize2D(x, mode="to_even_up", align_corners=False, name="resize")
    x = mx.sym.BilinearSampler(x, grid, name="sampler")
    x = mx.sym.BatchNorm(x, axis=-1, fix_gamma=False, name="bn")
    sym = mx.sym.moments(x, axes=(1, 3), name="m")  # both outputs: MXNet miscomputes a lone m[1]
    params = random_params(sym, {"data": rand(2, 3, 7, 6), "theta": rand(2, 6)})
    model = export(sym, {k: mx.nd.array(v) for k, v in params.items()}, {"data": (2, 3, 7, 6), "theta": (2, 6)},
                   dynamic_batch=True, simplify=False, verify=False)
    inputs = {"data": rand(5, 3, 7, 6, seed=8), "theta": rand(5, 6, seed=9)}
    expected = mxnet_forward(sym, params, inputs)
    got = onnx_forward(model, inputs)
    assert len(got) == len(expected) == 2
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
