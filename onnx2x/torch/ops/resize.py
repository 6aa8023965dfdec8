"""Resize, Upsample, GridSample and AffineGrid.

Resize has many modes that ``F.interpolate`` only partly covers. When shapes and scales are known
at conversion time, the converter computes ONNX's exact per-axis index/weight tables, then tries
the matching ``F.interpolate`` call on a probe image and uses it only if it reproduces the tables
(so the fast path is never a guess); otherwise the forward pass gathers with the tables. Without
static shapes, :func:`..runtime.resize.resize` does the whole computation at run time.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import converter
from ..runtime import resize as rt
from ..runtime import spatial as rt_spatial

log = logging.getLogger(__name__)

_LINEAR = {3: "linear", 4: "bilinear", 5: "trilinear"}


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _present(ctx, i: int) -> bool:
    """Input ``i`` is given and not an empty tensor (ONNX's way of omitting scales/roi)."""
    if not ctx.has_input(i):
        return False
    shape = ctx.shape(i)
    return not (shape is not None and len(shape) == 1 and shape[0] == 0)


def _probe_matches(tables, spatial, kwargs, exact: bool) -> bool:
    gen = torch.Generator().manual_seed(0)
    probe = torch.rand([1, 1] + list(spatial), generator=gen, dtype=torch.float32)
    want = rt.apply_tables(probe, tables)
    try:
        got = F.interpolate(probe, **kwargs)
    except Exception:  # a combination torch does not support
        return False
    if got.shape != want.shape:
        return False
    if exact:
        return bool(torch.equal(got, want))
    return bool(torch.allclose(got, want, rtol=1e-5, atol=1e-6))


def _interpolate_kwargs(mode: str, rank: int, antialias: bool, spatial_out, spatial_scales):
    """Candidate F.interpolate calls for an ONNX mode, most common first."""
    cands = []
    sizings = [{"scale_factor": spatial_scales, "recompute_scale_factor": False}] if spatial_scales else []
    sizings.append({"size": spatial_out})
    if mode == "nearest":
        for m in ("nearest", "nearest-exact"):
            cands += [dict(mode=m, **s) for s in sizings]
        return cands, True
    if mode == "linear":
        tmode = _LINEAR.get(rank)
    else:
        tmode = "bicubic" if rank == 4 else None
    if tmode is None or (antialias and rank != 4):
        return [], False
    for ac in (False, True):
        for s in sizings:
            kw = dict(mode=tmode, align_corners=ac, **s)
            if antialias:
                kw["antialias"] = True
            cands.append(kw)
    return cands, False


def _fast_path(ctx, x, shape, entries, tables, mode, antialias, scales_given):
    rank = len(shape)
    dtype = ctx.dtype(0)
    if rank not in (3, 4, 5) or (dtype is not None and not dtype.is_floating_point):
        return None
    if any(a < 2 for a, *_ in entries) or any(t[3] is not None for t in tables):
        return None
    out = rt.output_shape(shape, entries)
    spatial_scales = None
    if scales_given:
        by_axis = {a: s for a, _, s, _, _ in entries}
        spatial_scales = [float(by_axis.get(a, 1.0)) for a in range(2, rank)]
    cands, exact = _interpolate_kwargs(mode, rank, antialias, out[2:], spatial_scales)
    probe_tables = [(a, i, None if w is None else w.to(torch.float32), m) for a, i, w, m in tables]
    for kw in cands:
        if _probe_matches(probe_tables, shape[2:], kw, exact):
            return ctx.call(F.interpolate, x, **kw)
    return None


def _resize(ctx, *, roi_i: Optional[int], scales_i: Optional[int], sizes_i: Optional[int], mode: str,
            ctm: str, nearest_mode: str = "round_prefer_floor", cubic_a: float = -0.75,
            exclude_outside: bool = False, extrapolation_value: float = 0.0, axes=None,
            keep_aspect: str = "stretch", antialias: bool = False, scales_attr=None):
    x = ctx.input(0)
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.unsupported(f"mode {mode!r}")
    if ctm not in rt.COORDINATE_TRANSFORMATION_MODES:
        raise ctx.unsupported(f"coordinate_transformation_mode {ctm!r}")
    use_sizes = sizes_i is not None and _present(ctx, sizes_i)
    if scales_attr is None and not use_sizes and (scales_i is None or not _present(ctx, scales_i)):
        scales_attr = ctx.attr("scales", None)
        if scales_attr is None:
            raise ctx.fail(f"{ctx.op_type} needs scales or sizes: the node has neither")
        # the opset-7 form (scales as an attribute) in a newer model: read as OpenCV and others do
        log.warning("%s: scales given as an attribute, the opset-7 form; opset %d expects an input: "
                    "using the attribute", ctx.where(), ctx.opset)
    tf_crop = ctm == "tf_crop_and_resize"
    sizes_c = ctx.const_ints(sizes_i) if use_sizes else None
    if scales_attr is not None:
        scales_c = [float(v) for v in scales_attr]
    elif not use_sizes and scales_i is not None:
        scales_c = ctx.const(scales_i)
        scales_c = None if scales_c is None else [float(v) for v in np.asarray(scales_c).reshape(-1)]
    else:
        scales_c = None
    roi_c: Optional[list] = None
    roi_known = True
    if tf_crop and roi_i is not None and _present(ctx, roi_i):
        roi_arr = ctx.const(roi_i)
        roi_known = roi_arr is not None
        roi_c = None if roi_arr is None else [float(v) for v in np.asarray(roi_arr).reshape(-1)]
    shape = ctx.shape(0)
    static = shape is not None and roi_known and (sizes_c is not None if use_sizes else scales_c is not None)
    if static:
        if any(v is None for v in shape):
            # a dimension unknown here is fine only if it is not resized
            filled = [1 if v is None else int(v) for v in shape]
            entries = rt.plan(filled, None if use_sizes else scales_c, sizes_c, axes, roi_c, keep_aspect, tf_crop)
            if any(shape[a] is None for a, *_ in entries) or (use_sizes and axes is None):
                static = False
        else:
            entries = rt.plan(list(shape), None if use_sizes else scales_c, sizes_c, axes, roi_c, keep_aspect, tf_crop)
    if static:
        if not entries:
            return x
        dtype = ctx.dtype(0)
        wdtype = dtype if dtype is not None and dtype.is_floating_point else torch.float32
        tables = rt.build_tables(shape, entries, mode, ctm, nearest_mode, cubic_a, exclude_outside,
                                 antialias, wdtype)
        if all(v is not None for v in shape[2:]):
            filled = [1 if v is None else int(v) for v in shape]  # batch/channel: not resized on this path
            fast = _fast_path(ctx, x, filled, entries, tables, mode, antialias, not use_sizes)
            if fast is not None:
                return fast
        return ctx.call(rt.apply_tables, x, tables, extrapolation_value)
    roi = ctx.input(roi_i) if (roi_i is not None and tf_crop) else None
    scales = scales_attr if scales_attr is not None else (ctx.input(scales_i) if scales_i is not None else None)
    sizes = ctx.input(sizes_i) if use_sizes else None
    return ctx.call(rt.resize, x, roi, None if use_sizes else scales, sizes, axes, mode, ctm, nearest_mode,
                    cubic_a, exclude_outside, extrapolation_value, keep_aspect, antialias)


def _legacy_mode(ctx) -> str:
    mode = _text(ctx.attr("mode", None), "nearest").lower()
    return {"bilinear": "linear", "trilinear": "linear"}.get(mode, mode)


@converter("Upsample", since=1)
def upsample_attr(ctx):
    scales = ctx.attr("scales", None)
    if scales is None:  # opset 1: height_scale / width_scale on NCHW
        scales = [1.0, 1.0, float(ctx.attr("height_scale")), float(ctx.attr("width_scale"))]
    return _resize(ctx, roi_i=None, scales_i=None, sizes_i=None, mode=_legacy_mode(ctx), ctm="asymmetric",
                   nearest_mode="floor", scales_attr=scales)


@converter("Upsample", since=9)
def upsample(ctx):
    return _resize(ctx, roi_i=None, scales_i=1, sizes_i=None, mode=_legacy_mode(ctx), ctm="asymmetric",
                   nearest_mode="floor")


@converter("Resize", since=10)
def resize10(ctx):
    return _resize(ctx, roi_i=None, scales_i=1, sizes_i=None, mode=_legacy_mode(ctx), ctm="asymmetric",
                   nearest_mode="floor")


@converter("Resize", since=11)
def resize(ctx):
    axes = ctx.attr("axes", None)
    return _resize(
        ctx, roi_i=1, scales_i=2, sizes_i=3,
        mode=_text(ctx.attr("mode", None), "nearest"),
        ctm=_text(ctx.attr("coordinate_transformation_mode", None), "half_pixel"),
        nearest_mode=_text(ctx.attr("nearest_mode", None), "round_prefer_floor"),
        cubic_a=float(ctx.attr("cubic_coeff_a", -0.75)),
        exclude_outside=bool(ctx.attr("exclude_outside", 0)),
        extrapolation_value=float(ctx.attr("extrapolation_value", 0.0)),
        axes=None if axes is None else [int(a) for a in axes],
        keep_aspect=_text(ctx.attr("keep_aspect_ratio_policy", None), "stretch"),
        antialias=bool(ctx.attr("antialias", 0)),
    )


@converter("GridSample", since=16)
def grid_sample(ctx):
    mode = _text(ctx.attr("mode", None), "bilinear" if ctx.opset < 20 else "linear")
    mode = {"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode)
    padding = _text(ctx.attr("padding_mode", None), "zeros")
    align = bool(ctx.attr("align_corners", 0))
    rank = ctx.rank(0)
    if rank is not None and rank not in (4, 5):
        raise ctx.unsupported(f"{rank - 2}-D GridSample (PyTorch samples 2-D and 3-D grids)")
    if rank == 5 and mode == "bicubic":
        raise ctx.unsupported("cubic GridSample on a 3-D grid")
    return ctx.call(F.grid_sample, ctx.input(0), ctx.input(1), mode, padding, align)


@converter("AffineGrid", since=20)
def affine_grid(ctx):
    align = bool(ctx.attr("align_corners", 0))
    size = ctx.const_ints(1)
    if size is not None:
        return ctx.call(F.affine_grid, ctx.input(0), size, align)
    return ctx.call(rt_spatial.affine_grid, ctx.input(0), ctx.input(1), align)
