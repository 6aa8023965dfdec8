"""Neural-network layer translations that MXNet 1.9.1's exporter gets wrong or lacks.

Every attribute is read with MXNet's own default (its JSON omits attributes that hold their
default, and the stock code often assumed another one), and every form used is valid from opset 13
on. Fixed: LRN (``knorm`` defaults to 2, not 1), FullyConnected (``flatten`` defaults to True; an
N-d input without flattening is a MatMul, not an invalid Gemm), Embedding (indices clipped like
MXNet), Deconvolution (``no_bias`` defaults to True; ``target_shape``; ``adj``), BatchNorm
(``fix_gamma``, MXNet's default, ignores the stored gamma; any axis), Pooling (``full`` exactly,
``same``, ``sum``, ``count_include_pad``), AdaptiveAvgPooling2D with any output size, UpSampling
bilinear, Crop ``center_crop`` (BilinearResize2D: ``ops_resize.py``),
L2Normalization (all modes, with ``eps``). Added: GroupNorm, GridGenerator, BilinearSampler,
_contrib_MultiBoxPrior.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import helper

from .ops_common import Emitter, delegate, stock_translation
from .translations import translation


@translation("LRN", since=12)
def convert_lrn(node, **kwargs):
    """MXNet: x / (knorm + alpha/nsize * sum_window(x^2))^beta, the same formula as ONNX LRN."""
    e = Emitter(node, kwargs)
    nsize = e.attr_int("nsize", None)
    if nsize is None:
        raise e.fail("LRN needs nsize")
    e.op("LRN", [e.inputs[0]], e.name, alpha=e.attr_float("alpha", 1e-4), beta=e.attr_float("beta", 0.75),
         bias=e.attr_float("knorm", 2.0), size=nsize)
    return e.done()


@translation("FullyConnected", since=12)
def convert_fully_connected(node, **kwargs):
    e = Emitter(node, kwargs)
    flatten = e.attr_bool("flatten", True)
    no_bias = e.attr_bool("no_bias", False)
    data, weight = e.inputs[0], e.inputs[1]
    bias = None if no_bias or len(e.inputs) < 3 else e.inputs[2]
    if flatten:
        flat = e.op("Flatten", [data], axis=1)
        e.op("Gemm", [flat, weight] + ([bias] if bias else []), e.name, alpha=1.0, beta=1.0, transA=0, transB=1)
        return e.done()
    weight_t = e.op("Transpose", [weight], perm=[1, 0])
    if bias is None:
        e.op("MatMul", [data, weight_t], e.name)
    else:
        product = e.op("MatMul", [data, weight_t])
        e.op("Add", [product, bias], e.name)
    return e.done()


@translation("Embedding", since=12)
def convert_embedding(node, **kwargs):
    """Gather rows; MXNet clips out-of-range indices (ONNX Gather would fail on them)."""
    e = Emitter(node, kwargs)
    input_dim = e.attr_int("input_dim", None)
    indices = e.cast(e.inputs[0], np.int64)
    if input_dim is not None:
        indices = e.op("Clip", [indices, e.scalar(0, np.int64), e.scalar(input_dim - 1, np.int64)])
    e.op("Gather", [e.inputs[1], indices], e.name, axis=0)
    return e.done(), (e.dtype(1),)


def _check_layout(e: Emitter, allowed=("NCW", "NCHW", "NCDHW")) -> None:
    layout = e.attr_str("layout", None)
    if layout is not None and layout not in allowed:
        raise e.fail(f"layout {layout} is not supported (only {', '.join(allowed)})")


@translation("Deconvolution", since=12)
def convert_deconvolution(node, **kwargs):
    """ConvTranspose with MXNet's padding rules: ``adj`` and ``target_shape`` become asymmetric pads."""
    e = Emitter(node, kwargs)
    _check_layout(e)
    kernel = [int(k) for k in e.attr_tuple("kernel")]
    if not kernel:
        raise e.fail("Deconvolution needs kernel")
    nd = len(kernel)

    def per_dim(key: str, default: int) -> list[int]:
        values = [default if v is None else int(v) for v in e.attr_tuple(key)]
        return values + [default] * (nd - len(values))

    stride, dilate, pad, adj = per_dim("stride", 1), per_dim("dilate", 1), per_dim("pad", 0), per_dim("adj", 0)
    target = [int(t) for t in e.attr_tuple("target_shape") if t is not None]
    group = e.attr_int("num_group", 1)
    no_bias = e.attr_bool("no_bias", True)  # MXNet's Deconvolution default, unlike Convolution

    begin, end, output_padding = [], [], []
    if target and any(target):
        spatial = e.need_input_shape(0)[-nd:]
        for i in range(nd):
            total = stride[i] * (spatial[i] - 1) + dilate[i] * (kernel[i] - 1) + 1 - target[i]
            if total < 0:
                raise e.fail(f"target_shape {tuple(target)} is larger than the full output")
            # MXNet: pad = ceil(total / 2) on both sides, then adj = total % 2 added back at the end
            p = (total + 1) // 2
            begin.append(p)
            end.append(total - p)
            output_padding.append(0)
    else:
        for i in range(nd):
            tail = pad[i] - adj[i]
            begin.append(pad[i])
            end.append(max(tail, 0))
            output_padding.append(max(-tail, 0))

    inputs = [e.inputs[0], e.inputs[1]]
    if not no_bias:
        if len(e.inputs) < 3:
            raise e.fail("no_bias=False but no bias input")
        inputs.append(e.inputs[2])
    e.op("ConvTranspose", inputs, e.name, group=group, kernel_shape=kernel, strides=stride, dilations=dilate,
         pads=begin + end, output_padding=output_padding if any(output_padding) else None)
    return e.done()


@translation("BatchNorm", since=12)
def convert_batchnorm(node, **kwargs):
    """Inference BatchNorm on any axis, with MXNet's ``fix_gamma``.

    ``fix_gamma`` defaults to True in MXNet, and then the stored gamma is ignored (taken as
    ones) at inference; the stock translation fed it to BatchNormalization anyway. Axis 1 is
    BatchNormalization; any other axis is written out with broadcasting.
    """
    e = Emitter(node, kwargs)
    if e.attr_bool("output_mean_var", False):
        raise e.fail("output_mean_var=True is not supported")
    rank = len(e.need_input_shape(0))
    axis = e.attr_int("axis", 1) % rank
    eps = e.attr_float("eps", 1e-3)
    fix_gamma = e.attr_bool("fix_gamma", True)
    data, gamma, beta, mean, var = e.inputs[:5]
    if axis == 1:
        if fix_gamma:
            channels = (e.input_shape(1) or (e.need_input_shape(0)[1],))
            gamma = e.const(np.ones(channels, dtype=e.dtype(1)), hint="unit_gamma")
        # momentum: the same convention in both (running = running * m + batch * (1 - m)); only
        # training reads it, which is what a model converted to train elsewhere does
        e.op("BatchNormalization", [data, gamma, beta, mean, var], e.name, epsilon=eps,
             momentum=e.attr_float("momentum", 0.9))
        return e.done()
    param_shape = e.ints([-1] + [1] * (rank - 1 - axis), "param_shape")

    def shaped(x: str) -> str:
        return e.op("Reshape", [x, param_shape])

    std = e.op("Sqrt", [e.op("Add", [shaped(var), e.scalar(eps)])])
    normed = e.op("Div", [e.op("Sub", [data, shaped(mean)]), std])
    if not fix_gamma:
        normed = e.op("Mul", [normed, shaped(gamma)])
    e.op("Add", [normed, shaped(beta)], e.name)
    return e.done()


def _pool_geometry(e: Emitter, nd: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """``kernel``, ``stride``, ``pad`` and ``extra`` per spatial dim for MXNet's pooling convention.

    ``extra`` is how far past the padded input the windows may run, so that a plain (floor)
    window count over ``pad`` before and ``pad + extra`` after gives MXNet's output size:
    valid floor((x + 2p - k) / s) + 1 (extra 0), full ceil((x + 2p - k) / s) + 1 (extra s - 1),
    same ceil(x / s) (no pad, extra k - 1). A window is cut where the padded input ends.
    """
    kernel = [int(k) for k in e.attr_tuple("kernel")]
    if len(kernel) != nd:
        raise e.fail(f"kernel {tuple(kernel)} does not match the {nd} spatial dims of the input")

    def per_dim(key: str, default: int) -> list[int]:
        values = [default if v is None else int(v) for v in e.attr_tuple(key)][:nd]
        return values + [default] * (nd - len(values))

    stride, pad = per_dim("stride", 1), per_dim("pad", 0)
    convention = e.attr_str("pooling_convention", "valid")
    if convention == "valid":
        extra = [0] * nd
    elif convention == "full":
        extra = [s - 1 for s in stride]
    elif convention == "same":
        pad, extra = [0] * nd, [k - 1 for k in kernel]
    else:
        raise e.fail(f"pooling_convention={convention} is not supported")
    return kernel, stride, pad, extra


def _ends(pad, extra) -> list[int]:
    return [p + more for p, more in zip(pad, extra)]


def _pad_spatial(e: Emitter, x: str, begin, end, value: str) -> str:
    return e.op("Pad", [x, e.ints([0, 0] + list(begin) + [0, 0] + list(end), "pads"), value], mode="constant")


def _max_pool(e: Emitter, x: str, kernel, stride, pad, extra, full: bool) -> None:
    """MaxPool with ONNX pads where they express MXNet's windows, else an explicit pad with the
    lowest value (a window lying wholly in the padding gives it, as in MXNet).

    ceil_mode=1 matches 'full' only while no last window starts in the right padding (onnxruntime
    drops such a window, MXNet keeps it): guaranteed for every input size when k >= s + p.
    """
    if full and all(k >= s + p for k, s, p in zip(kernel, stride, pad)):
        e.op("MaxPool", [x], e.name, kernel_shape=kernel, strides=stride, pads=pad + pad, ceil_mode=1)
        return
    end = _ends(pad, extra)
    if all(p < k and q < k for p, q, k in zip(pad, end, kernel)):  # onnxruntime wants pads < kernel
        e.op("MaxPool", [x], e.name, kernel_shape=kernel, strides=stride, pads=pad + end)
        return
    dtype = e.dtype()
    lowest = np.finfo(dtype).min if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min
    padded = _pad_spatial(e, x, pad, end, e.scalar(lowest))
    e.op("MaxPool", [padded], e.name, kernel_shape=kernel, strides=stride)


def _avg_pool(e: Emitter, x: str, channels: int, kernel, stride, pad, extra, full: bool,
              include_pad: bool) -> None:
    """AveragePool dividing as MXNet does: by the window's size within the padded input
    (``count_include_pad``) or by its number of input elements; never by the part past the end."""
    if full and all(k >= s + p for k, s, p in zip(kernel, stride, pad)):
        # ceil_mode cuts windows at the padded end, like MXNet (exact while k >= s + p, see _max_pool)
        e.op("AveragePool", [x], e.name, kernel_shape=kernel, strides=stride, pads=pad + pad, ceil_mode=1,
             count_include_pad=int(include_pad))
        return
    end = _ends(pad, extra)
    if not any(pad):
        include_pad = False  # the same divisor either way, and 'same' windows must not count the overhang
    if not (full or any(p >= k or q >= k for p, q, k in zip(pad, end, kernel))):
        e.op("AveragePool", [x], e.name, kernel_shape=kernel, strides=stride, pads=pad + end,
             count_include_pad=int(include_pad))
        return
    _avg_pool_by_ratio(e, x, channels, kernel, stride, pad, extra, include_pad)


def _avg_pool_by_ratio(e: Emitter, x: str, channels: int, kernel, stride, pad, extra, include_pad: bool) -> None:
    """Window sum over window count, for the windows ONNX pads cannot describe (a pad not smaller
    than the kernel, a last window starting in the right padding).

    Both are depthwise ones-kernel convolutions (Conv takes any pads; a zero Pad in front of an
    AveragePool gets fused into it by onnxruntime and is then refused). The count comes from a
    ones mask of the input's spatial shape (a constant once shapes are folded); a window with
    nothing to count gives 0, as in MXNet.
    """
    nd = len(kernel)
    end = _ends(pad, extra)
    summed = _window_sum(e, x, channels, kernel, stride, pad, end)
    spatial = e.dims(x, 2)
    value = helper.make_tensor("value", e.onnx_dtype(), [1], [1])
    if include_pad:  # the zero padding counts, the overhang past it does not
        spatial = e.op("Add", [spatial, e.ints([2 * p for p in pad], "padded")])
        mask_begin, mask_end = [0] * nd, list(extra)
    else:
        mask_begin, mask_end = pad, end
    ones = e.op("ConstantOfShape", [e.op("Concat", [e.ints([1, 1], "unit"), spatial], axis=0)], value=value)
    counted = _window_sum(e, ones, 1, kernel, stride, mask_begin, mask_end)
    # counts are whole numbers; an empty window sums to 0 and must give 0, so divide by at least 1
    e.op("Div", [summed, e.op("Max", [counted, e.scalar(1.0)])], e.name)


def _window_sum(e: Emitter, x: str, channels: int, kernel, stride, begin, end, out=None) -> str:
    """Sum over each window: a depthwise convolution with a ones kernel (zero padding adds nothing)."""
    ones = e.const(np.ones([channels, 1] + list(kernel), dtype=e.dtype()), hint="ones_kernel")
    return e.op("Conv", [x, ones], out, group=channels, kernel_shape=list(kernel), strides=list(stride),
                pads=list(begin) + list(end))


@translation("Pooling", since=12)
def convert_pooling(node, **kwargs):
    """max, avg and sum pooling in each of MXNet's conventions (valid, full, same) and global;
    ``lp`` goes down the chain.

    The stock translation mapped 'full' to ceil_mode=1 whatever the padding (onnxruntime then
    drops a last window MXNet keeps, changing the output shape), refused 'same' and 'sum'.
    """
    e = Emitter(node, kwargs)
    pool_type = e.attr_str("pool_type", "max")
    if pool_type not in ("max", "avg", "sum"):
        return delegate("Pooling", convert_pooling, stock_translation("convert_pooling"), node, kwargs)
    _check_layout(e)
    shape = e.need_input_shape(0)
    nd = len(shape) - 2
    x = e.inputs[0]
    if e.attr_bool("global_pool", False):
        if pool_type == "sum":
            e.reduce("ReduceSum", x, list(range(2, 2 + nd)), keepdims=True, out=e.name)
        else:
            e.op("GlobalMaxPool" if pool_type == "max" else "GlobalAveragePool", [x], e.name)
        return e.done()
    kernel, stride, pad, extra = _pool_geometry(e, nd)
    full = e.attr_str("pooling_convention", "valid") == "full"
    if pool_type == "sum":
        _window_sum(e, x, shape[1], kernel, stride, pad, _ends(pad, extra), e.name)
    elif pool_type == "max":
        _max_pool(e, x, kernel, stride, pad, extra, full)
    else:  # MXNet's count_include_pad is unset (None) by default, which means True
        _avg_pool(e, x, shape[1], kernel, stride, pad, extra, full, e.attr_bool("count_include_pad", True))
    return e.done()


def _adaptive_matrix(size_in: int, size_out: int, dtype) -> np.ndarray:
    """Row i averages input bins [floor(i*in/out), ceil((i+1)*in/out)) (MXNet's bin edges)."""
    matrix = np.zeros((size_out, size_in), dtype=np.float64)
    for i in range(size_out):
        start = (i * size_in) // size_out
        stop = -((-(i + 1) * size_in) // size_out)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix.astype(dtype)


@translation("_contrib_AdaptiveAvgPooling2D", since=12)
def convert_adaptive_avg_pool(node, **kwargs):
    """Any output size: AveragePool when bins are equal, else two averaging MatMuls (rows, columns)."""
    e = Emitter(node, kwargs)
    size = [int(s) for s in e.attr_tuple("output_size") if s is not None]
    out_h, out_w = (1, 1) if not size else (size[0], size[0]) if len(size) == 1 else (size[0], size[1])
    if (out_h, out_w) == (1, 1):
        e.op("GlobalAveragePool", [e.inputs[0]], e.name)
        return e.done()
    height, width = e.need_input_shape(0)[2:4]
    if height % out_h == 0 and width % out_w == 0:
        kernel = [height // out_h, width // out_w]
        e.op("AveragePool", [e.inputs[0]], e.name, kernel_shape=kernel, strides=kernel)
        return e.done()
    rows = e.const(_adaptive_matrix(height, out_h, e.dtype()), hint="rows")
    cols = e.const(_adaptive_matrix(width, out_w, e.dtype()).T.copy(), hint="cols")
    pooled_rows = e.op("MatMul", [rows, e.inputs[0]])
    e.op("MatMul", [pooled_rows, cols], e.name)
    return e.done()


@translation("UpSampling", since=12)
def convert_upsampling(node, **kwargs):
    """nearest: Resize; bilinear: MXNet's own depthwise deconvolution with the given weight."""
    e = Emitter(node, kwargs)
    scale = e.attr_int("scale", None)
    if scale is None:
        raise e.fail("UpSampling needs scale")
    sample_type = e.attr_str("sample_type", None)
    num_args = e.attr_int("num_args", 1)
    if sample_type == "nearest":
        if num_args != 1:
            raise e.fail("nearest UpSampling with several inputs is not supported")
        scales = e.const(np.array([1, 1, scale, scale], dtype=np.float32), hint="scales")
        e.op("Resize", [e.inputs[0], "", scales], e.name, mode="nearest",
             coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        return e.done()
    if sample_type != "bilinear":
        raise e.fail(f"sample_type={sample_type} is not supported")
    kernel = 2 * scale - scale % 2
    pad = int(math.ceil((scale - 1) / 2.0))
    channels = e.attr_int("num_filter", 0)
    weight = e.weight(1)
    if weight is not None:
        channels = int(weight.shape[0])
    if not channels:
        channels = e.need_input_shape(0)[1]
    e.op("ConvTranspose", [e.inputs[0], e.inputs[1]], e.name, group=channels, kernel_shape=[kernel, kernel],
         strides=[scale, scale], pads=[pad, pad, pad, pad])
    return e.done()


@translation("Crop", since=12)
def convert_crop(node, **kwargs):
    """Slice H and W; the size comes from ``h_w`` or the second input, the start from
    ``offset`` or, with ``center_crop``, from the centred difference."""
    e = Emitter(node, kwargs)
    data = e.inputs[0]
    if len(e.inputs) > 1:
        size = e.dims(e.inputs[1], 2, 4)
    else:
        h_w = [int(v) for v in e.attr_tuple("h_w", (0, 0))]
        size = e.ints(h_w, "h_w")
    if e.attr_bool("center_crop", False):
        spare = e.op("Sub", [e.dims(data, 2, 4), size])
        starts = e.op("Div", [spare, e.ints([2, 2], "two")])
    else:
        starts = e.ints([int(v) for v in e.attr_tuple("offset", (0, 0))], "offset")
    ends = e.op("Add", [starts, size])
    e.op("Slice", [data, starts, ends, e.ints([2, 3], "axes")], e.name)
    return e.done()


@translation("L2Normalization", since=12)
def convert_l2_normalization(node, **kwargs):
    """x / sqrt(sum(x^2) + eps) over C (channel), all but N (instance) or the spatial dims (spatial)."""
    e = Emitter(node, kwargs)
    mode = e.attr_str("mode", "instance")
    eps = e.attr_float("eps", 1e-10)
    data = e.inputs[0]
    if mode == "channel":
        grouped, axis = data, 1
    elif mode == "instance":
        grouped, axis = e.op("Reshape", [data, e.ints([0, -1], "flat")]), 1
    elif mode == "spatial":
        grouped, axis = e.op("Reshape", [data, e.ints([0, 0, -1], "flat")]), 2
    else:
        raise e.fail(f"mode={mode} is not supported")
    square_sum = e.reduce("ReduceSum", e.op("Mul", [grouped, grouped]), [axis], keepdims=True)
    norm = e.op("Sqrt", [e.op("Add", [square_sum, e.scalar(eps)])])
    if grouped == data:
        e.op("Div", [data, norm], e.name)
    else:
        e.op("Reshape", [e.op("Div", [grouped, norm]), e.shape(data)], e.name)
    return e.done()


@translation("GroupNorm", since=12)
def convert_group_norm(node, **kwargs):
    """Normalise each of ``num_groups`` channel groups (biased variance, as MXNet)."""
    e = Emitter(node, kwargs)
    if e.attr_bool("output_mean_var", False):
        raise e.fail("output_mean_var=True is not supported")
    groups = e.attr_int("num_groups", 1)
    eps = e.attr_float("eps", 1e-5)
    data, gamma, beta = e.inputs[:3]
    grouped = e.op("Reshape", [data, e.ints([0, groups, -1], "grouped")])
    mean = e.reduce("ReduceMean", grouped, [2], keepdims=True)
    centred = e.op("Sub", [grouped, mean])
    var = e.reduce("ReduceMean", e.op("Mul", [centred, centred]), [2], keepdims=True)
    normed = e.op("Div", [centred, e.op("Sqrt", [e.op("Add", [var, e.scalar(eps)])])])
    group_shape = e.ints([groups, 1], "group_shape")  # MXNet 1.x: gamma and beta have shape (num_groups,)
    scaled = e.op("Mul", [normed, e.op("Reshape", [gamma, group_shape])])
    shifted = e.op("Add", [scaled, e.op("Reshape", [beta, group_shape])])
    e.op("Reshape", [shifted, e.shape(data)], e.name)
    return e.done()


@translation("GridGenerator", since=12)
def convert_grid_generator(node, **kwargs):
    """Sampling grid in [-1, 1] (channel 0 = x, 1 = y), from an affine matrix or a pixel flow."""
    e = Emitter(node, kwargs)
    kind = e.attr_str("transform_type", None)
    dtype = e.dtype()
    if kind == "affine":
        height, width = [int(v) for v in e.attr_tuple("target_shape", (0, 0))]
        if height <= 0 or width <= 0:
            raise e.fail("affine GridGenerator needs a target_shape")
        xs = np.linspace(-1.0, 1.0, width) if width > 1 else np.array([-1.0])
        ys = np.linspace(-1.0, 1.0, height) if height > 1 else np.array([-1.0])
        grid_x, grid_y = np.meshgrid(xs, ys)
        base = np.stack([grid_x.ravel(), grid_y.ravel(), np.ones(height * width)]).astype(dtype)
        theta = e.op("Reshape", [e.inputs[0], e.ints([-1, 2, 3], "theta")])
        points = e.op("MatMul", [theta, e.const(base, hint="base")])
        e.op("Reshape", [points, e.ints([-1, 2, height, width], "grid")], e.name)
        return e.done()
    if kind == "warp":
        height, width = e.need_input_shape(0)[2:4]
        grid_y, grid_x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        base = np.stack([grid_x, grid_y])[None].astype(dtype)
        scale = np.array([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=dtype).reshape(1, 2, 1, 1)
        moved = e.op("Add", [e.inputs[0], e.const(base, hint="base")])
        scaled = e.op("Mul", [moved, e.const(scale, hint="scale")])
        e.op("Sub", [scaled, e.scalar(1.0)], e.name)
        return e.done()
    raise e.fail(f"transform_type={kind} is not supported")


@translation("BilinearSampler", since=12)
def convert_bilinear_sampler(node, **kwargs):
    """Bilinear sampling with zeros outside the input, written with GatherElements (valid at opset 13).

    Grid x/y in [-1, 1] map to pixel (x + 1) * (W - 1) / 2; each of the four neighbours counts
    only when it lies inside the image, as in MXNet's kernel.
    """
    e = Emitter(node, kwargs)
    _, channels, height, width = e.need_input_shape(0)
    _, _, out_h, out_w = e.need_input_shape(1)
    data, grid = e.inputs[0], e.inputs[1]
    points = out_h * out_w
    flat_grid = e.op("Reshape", [grid, e.ints([0, 2, 1, points], "grid_flat")])  # (N, 2, 1, P)
    gx, gy = e.split(flat_grid, 1, [1, 1])
    gx = e.squeeze(gx, [1])  # (N, 1, P)
    gy = e.squeeze(gy, [1])
    one = e.scalar(1.0)
    x = e.op("Mul", [e.op("Add", [gx, one]), e.scalar((width - 1) / 2.0)])
    y = e.op("Mul", [e.op("Add", [gy, one]), e.scalar((height - 1) / 2.0)])
    x0, y0 = e.op("Floor", [x]), e.op("Floor", [y])
    x1, y1 = e.op("Add", [x0, one]), e.op("Add", [y0, one])
    wx1, wy1 = e.op("Sub", [x, x0]), e.op("Sub", [y, y0])
    wx0, wy0 = e.op("Sub", [one, wx1]), e.op("Sub", [one, wy1])
    flat_data = e.op("Reshape", [data, e.ints([0, channels, height * width], "data_flat")])
    expand_to = e.ints([1, channels, 1], "expand")
    zero = e.scalar(0.0)
    max_x, max_y = e.scalar(float(width - 1)), e.scalar(float(height - 1))

    def inside(coord: str, upper: str) -> str:
        lower_ok = e.op("GreaterOrEqual", [coord, zero])
        upper_ok = e.op("LessOrEqual", [coord, upper])
        return e.op("And", [lower_ok, upper_ok])

    total = None
    for xc, yc, weight in ((x0, y0, e.op("Mul", [wx0, wy0])), (x1, y0, e.op("Mul", [wx1, wy0])),
                           (x0, y1, e.op("Mul", [wx0, wy1])), (x1, y1, e.op("Mul", [wx1, wy1]))):
        valid = e.op("Cast", [e.op("And", [inside(xc, max_x), inside(yc, max_y)])], to=e.onnx_dtype())
        xi = e.op("Clip", [xc, zero, max_x])
        yi = e.op("Clip", [yc, zero, max_y])
        index = e.cast(e.op("Add", [e.op("Mul", [yi, e.scalar(float(width))]), xi]), np.int64)
        gathered = e.op("GatherElements", [flat_data, e.op("Expand", [index, expand_to])], axis=2)
        term = e.op("Mul", [gathered, e.op("Mul", [weight, valid])])
        total = term if total is None else e.op("Add", [total, term])
    e.op("Reshape", [total, e.ints([0, channels, out_h, out_w], "out_shape")], e.name)
    return e.done()


def multibox_prior_anchors(height: int, width: int, sizes, ratios, steps, offsets, clip: bool) -> np.ndarray:
    """MXNet's MultiBoxPrior anchors (xmin, ymin, xmax, ymax) for one feature map, in float32."""
    f = np.float32
    step_y = f(steps[0]) if steps[0] > 0 else f(1.0) / f(height)
    step_x = f(steps[1]) if steps[1] > 0 else f(1.0) / f(width)
    sizes = [f(s) for s in sizes]
    ratios = [f(r) for r in ratios]
    shapes = []  # (half width, half height) per anchor, in MXNet's order
    first_ratio = np.sqrt(ratios[0]) if ratios else f(1.0)
    for size in sizes:
        shapes.append((size * f(height) / f(width) * first_ratio / f(2), size / first_ratio / f(2)))
    for ratio in ratios[1:]:
        root = np.sqrt(ratio)
        shapes.append((sizes[0] * f(height) / f(width) * root / f(2), sizes[0] / root / f(2)))
    half = np.array(shapes, dtype=f)  # (A, 2)
    cy = (np.arange(height, dtype=f) + f(offsets[0])) * step_y
    cx = (np.arange(width, dtype=f) + f(offsets[1])) * step_x
    cyy, cxx = np.meshgrid(cy, cx, indexing="ij")
    centres = np.stack([cxx, cyy], axis=-1)[:, :, None, :]  # (H, W, 1, 2)
    anchors = np.concatenate([centres - half, centres + half], axis=-1).astype(f)
    if clip:
        anchors = np.clip(anchors, 0.0, 1.0)
    return anchors.reshape(1, -1, 4)


@translation("_contrib_MultiBoxPrior", since=12)
def convert_multibox_prior(node, **kwargs):
    """The anchors depend only on the feature map's height and width, so they are a constant."""
    e = Emitter(node, kwargs)
    height, width = e.need_input_shape(0)[2:4]
    sizes = [float(s) for s in e.attr_tuple("sizes", (1.0,))]
    ratios = [float(r) for r in e.attr_tuple("ratios", (1.0,))]
    steps = [float(s) for s in e.attr_tuple("steps", (-1.0, -1.0))]
    offsets = [float(o) for o in e.attr_tuple("offsets", (0.5, 0.5))]
    anchors = multibox_prior_anchors(height, width, sizes, ratios, steps, offsets, e.attr_bool("clip", False))
    e.op("Identity", [e.const(anchors, hint="anchors")], e.name)
    return e.done(), (np.dtype(np.float32),)

