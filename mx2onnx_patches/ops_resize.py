"""BilinearResize2D with MXNet's own sampling coordinates, computed at export time.

ONNX ``Resize`` (``align_corners``/``half_pixel``) describes the same mapping, but a runtime
computes the source coordinate its own way: onnxruntime takes ``x * (in - 1) / (out - 1)`` where
MXNet 1.9.1 (``src/operator/contrib/bilinear_resize.cc``) multiplies by the float32 ratio, so a
480 -> 240 ``align_corners`` resize differs by 1e-4 on its own, which a network amplifies. The
coordinates depend only on the (static) spatial sizes, so they are computed here exactly as
MXNet computes them, and the interpolation is written as MXNet evaluates it:

- scale: ``(in - 1) / (out - 1)`` with ``align_corners`` (0 for a 1-pixel output), else
  ``in / out``, in float32;
- source index: ``scale * dst`` in float32 with ``align_corners``, else
  ``scale * (dst + 0.5) - 0.5`` in double, rounded to float32 and clamped at 0;
- ``i0 = trunc(src)``, ``i1 = i0 + (i0 < in - 1)``, ``l1 = src - i0`` (float32, then the input
  type), ``l0 = 1 - l1`` in the input type;
- ``out = l0h * (l0w * x[i0h, i0w] + l1w * x[i0h, i1w]) + l1h * (l0w * x[i1h, i0w] + l1w * x[i1h, i1w])``,
  and a plain copy when both sizes are unchanged.

Every mode (``size`` with height/width or scale_height/scale_width, ``odd_scale``, ``like``,
``to_even_down``/``_up``, ``to_odd_down``/``_up``) only decides the output size, which MXNet's
shape inference gives; the batch and channel dimensions stay free.
"""
from __future__ import annotations

import numpy as np

from .ops_common import Emitter
from .translations import translation


def source_coordinates(in_size: int, out_size: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, l1)`` per output position along one axis, as MXNet's CPU kernel computes them."""
    f32 = np.float32
    if out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1) if align_corners else f32(in_size) / f32(out_size)
    else:
        scale = f32(0)
    dst = np.arange(out_size)
    if align_corners:
        src = (f32(scale) * dst.astype(f32)).astype(f32)
    else:
        src = (np.float64(scale) * (dst + 0.5) - 0.5).astype(f32)
        src = np.where(src < 0, f32(0), src)
    i0 = src.astype(np.int64)  # truncation; src >= 0
    i1 = i0 + (i0 < in_size - 1)
    l1 = (src - i0.astype(f32)).astype(f32)
    return i0, i1, l1


@translation("_contrib_BilinearResize2D", since=12)
def convert_bilinear_resize(node, **kwargs):
    e = Emitter(node, kwargs)
    data = e.inputs[0]
    in_h, in_w = e.need_input_shape(0)[2:4]
    out_h, out_w = e.need_output_shape(0)[2:4]
    if (in_h, in_w) == (out_h, out_w):
        e.op("Identity", [data], e.name)
        return e.done()
    align = e.attr_bool("align_corners", True)
    dtype = e.dtype(0)
    h0, h1, lh = source_coordinates(in_h, out_h, align)
    w0, w1, lw = source_coordinates(in_w, out_w, align)
    lh, lw = lh.astype(dtype), lw.astype(dtype)
    one = dtype.type(1)
    weight_h = [e.const((one - lh).reshape(-1, 1), hint="l0h"), e.const(lh.reshape(-1, 1), hint="l1h")]
    weight_w = [e.const(one - lw, hint="l0w"), e.const(lw, hint="l1w")]
    rows = [e.op("Gather", [data, e.ints(index, f"rows{k}")], axis=2) for k, index in enumerate((h0, h1))]
    columns = [e.ints(w0, "cols0"), e.ints(w1, "cols1")]
    blended = []
    for row in rows:
        left, right = (e.op("Mul", [weight_w[k], e.op("Gather", [row, columns[k]], axis=3)]) for k in (0, 1))
        blended.append(e.op("Add", [left, right]))
    top, bottom = (e.op("Mul", [weight_h[k], blended[k]]) for k in (0, 1))
    e.op("Add", [top, bottom], e.name)
    return e.done()
