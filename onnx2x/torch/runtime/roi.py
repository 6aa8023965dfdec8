"""ONNX RoiAlign and MaxRoiPool.

The sampling grid of each region depends on the region's coordinates (adaptive sampling when
``sampling_ratio`` is 0), so regions are processed one at a time; the work inside a region is
vectorised.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def _bilinear_terms(img: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor):
    """The four weighted corner values ONNX RoiAlign uses, each (C, len(ys), len(xs))."""
    c, h, w = img.shape
    oob_y = (ys < -1.0) | (ys > h)
    oob_x = (xs < -1.0) | (xs > w)
    y = ys.clamp(min=0)
    x = xs.clamp(min=0)
    y_low = torch.floor(y).long()
    x_low = torch.floor(x).long()
    y_edge = y_low >= h - 1
    x_edge = x_low >= w - 1
    y_low = torch.where(y_edge, torch.full_like(y_low, h - 1), y_low)
    x_low = torch.where(x_edge, torch.full_like(x_low, w - 1), x_low)
    y_high = torch.where(y_edge, y_low, y_low + 1)
    x_high = torch.where(x_edge, x_low, x_low + 1)
    y = torch.where(y_edge, y_low.to(y.dtype), y)
    x = torch.where(x_edge, x_low.to(x.dtype), x)
    ly = y - y_low.to(y.dtype)
    lx = x - x_low.to(x.dtype)
    hy = 1.0 - ly
    hx = 1.0 - lx
    valid = (~oob_y).to(img.dtype).unsqueeze(1) * (~oob_x).to(img.dtype).unsqueeze(0)
    terms = []
    for yi, wy in ((y_low, hy), (y_high, ly)):
        for xi, wx in ((x_low, hx), (x_high, lx)):
            vals = img[:, yi][:, :, xi]  # (C, Y, X)
            wt = (wy.unsqueeze(1) * wx.unsqueeze(0)).to(img.dtype) * valid
            terms.append(vals * wt)
    return terms


def roi_align(x: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor, out_h: int, out_w: int,
              sampling_ratio: int, spatial_scale: float, mode: str, half_pixel: bool) -> torch.Tensor:
    """ONNX RoiAlign (avg or max) for NCHW ``x`` and (R, 4) ``rois`` in x1, y1, x2, y2 order."""
    n_rois = rois.shape[0]
    c = x.shape[1]
    out = torch.zeros(n_rois, c, out_h, out_w, dtype=x.dtype, device=x.device)
    offset = 0.5 if half_pixel else 0.0
    roi_list = rois.to(torch.float64).tolist()
    batch_list = batch_indices.reshape(-1).tolist()
    for r in range(n_rois):
        x1, y1, x2, y2 = [v * spatial_scale - offset for v in roi_list[r][:4]]
        roi_w, roi_h = x2 - x1, y2 - y1
        if not half_pixel:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / out_h, roi_w / out_w
        grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_h / out_h))
        grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_w / out_w))
        count = max(grid_h * grid_w, 1)
        iy = (torch.arange(grid_h, dtype=torch.float64) + 0.5) * bin_h / max(grid_h, 1)
        ix = (torch.arange(grid_w, dtype=torch.float64) + 0.5) * bin_w / max(grid_w, 1)
        ys = (y1 + torch.arange(out_h, dtype=torch.float64).unsqueeze(1) * bin_h + iy.unsqueeze(0)).reshape(-1)
        xs = (x1 + torch.arange(out_w, dtype=torch.float64).unsqueeze(1) * bin_w + ix.unsqueeze(0)).reshape(-1)
        if grid_h == 0 or grid_w == 0:
            continue
        terms = _bilinear_terms(x[int(batch_list[r])], ys.to(x.device), xs.to(x.device))
        if mode == "max":
            val = torch.stack(terms).amax(0)
            val = val.reshape(c, out_h, grid_h, out_w, grid_w).amax(dim=(2, 4))
        else:
            val = (terms[0] + terms[1] + terms[2] + terms[3])
            val = val.reshape(c, out_h, grid_h, out_w, grid_w).sum(dim=(2, 4)) / count
        out[r] = val
    return out


def max_roi_pool(x: torch.Tensor, rois: torch.Tensor, pooled: Sequence[int], spatial_scale: float) -> torch.Tensor:
    """ONNX MaxRoiPool: rois are (batch, x1, y1, x2, y2); empty bins give 0."""
    ph_n, pw_n = int(pooled[0]), int(pooled[1])
    n_rois = rois.shape[0]
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    out = torch.zeros(n_rois, c, ph_n, pw_n, dtype=x.dtype, device=x.device)
    for r, roi in enumerate(rois.to(torch.float64).tolist()):
        b = int(roi[0])
        x1, y1, x2, y2 = [int(round(v * spatial_scale)) for v in roi[1:5]]
        roi_h = max(y2 - y1 + 1, 1)
        roi_w = max(x2 - x1 + 1, 1)
        bin_h = roi_h / ph_n
        bin_w = roi_w / pw_n
        for ph in range(ph_n):
            hs = min(max(int(math.floor(ph * bin_h)) + y1, 0), h)
            he = min(max(int(math.ceil((ph + 1) * bin_h)) + y1, 0), h)
            for pw in range(pw_n):
                ws = min(max(int(math.floor(pw * bin_w)) + x1, 0), w)
                we = min(max(int(math.ceil((pw + 1) * bin_w)) + x1, 0), w)
                if he > hs and we > ws:
                    out[r, :, ph, pw] = x[b, :, hs:he, ws:we].amax(dim=(1, 2))
    return out
