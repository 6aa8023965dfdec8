"""Pad, DepthToSpace/SpaceToDepth, CenterCropPad, NonMaxSuppression and AffineGrid helpers.

``F.pad`` only reflects/replicates/wraps the last one to three axes of small-rank tensors and
refuses pads larger than the axis; ONNX allows any axis and any amount (numpy semantics), so the
non-constant modes gather with a computed index per padded axis.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F


def _as_ints(v) -> List[int]:
    if isinstance(v, torch.Tensor):
        return [int(a) for a in v.reshape(-1).tolist()]
    return [int(a) for a in v]


def pad_index(n: int, before: int, after: int, mode: str, device=None) -> torch.Tensor:
    """Source index of every position of an axis of size ``n`` padded by (before, after)."""
    i = torch.arange(-before, n + after, device=device)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return torch.remainder(i, n)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    j = torch.remainder(i, period)
    return torch.where(j >= n, period - j, j)


def pad(x: torch.Tensor, pads, mode: str, value=None, axes: Optional[Sequence[int]] = None) -> torch.Tensor:
    """ONNX Pad: ``pads`` = [begin of each axis..., end of each axis...] over ``axes`` (all by default)."""
    rank = x.dim()
    p = _as_ints(pads)
    ax = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in _as_ints(axes)]
    k = len(ax)
    begin = [0] * rank
    end = [0] * rank
    for i, a in enumerate(ax):
        begin[a] = p[i]
        end[a] = p[i + k]
    if mode == "constant":
        fill = 0.0
        if value is not None:
            fill = value.reshape(-1)[0].item() if isinstance(value, torch.Tensor) else value
            if isinstance(value, torch.Tensor) and value.numel() == 0:
                fill = 0.0
        flat: List[int] = []
        for a in range(rank - 1, -1, -1):
            flat += [begin[a], end[a]]
        while len(flat) > 2 and flat[-1] == 0 and flat[-2] == 0:
            flat = flat[:-2]
        return F.pad(x, flat, "constant", fill)
    y = x
    for a in range(rank):
        b, e = begin[a], end[a]
        if b < 0 or e < 0:  # negative pads crop
            y = y.narrow(a, max(-b, 0), y.shape[a] - max(-b, 0) - max(-e, 0))
            b, e = max(b, 0), max(e, 0)
        if b or e:
            y = torch.index_select(y, a, pad_index(int(y.shape[a]), b, e, mode, y.device))
    return y


def depth_to_space(x: torch.Tensor, blocksize: int, mode: str) -> torch.Tensor:
    n, c, h, w = x.shape
    b = int(blocksize)
    if mode == "CRD":
        y = x.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
    else:
        y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


def space_to_depth(x: torch.Tensor, blocksize: int) -> torch.Tensor:
    n, c, h, w = x.shape
    b = int(blocksize)
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def center_crop_pad(x: torch.Tensor, shape, axes: Optional[Sequence[int]] = None) -> torch.Tensor:
    """ONNX CenterCropPad: crop or zero-pad each listed axis around its centre."""
    rank = x.dim()
    target = _as_ints(shape)
    ax = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    y = x
    for a, t in zip(ax, target):
        n = int(y.shape[a])
        if t < n:
            y = y.narrow(a, (n - t) // 2, t)
        elif t > n:
            d = t - n
            widths = [0, 0] * (rank - a - 1) + [d // 2, d - d // 2]
            y = F.pad(y, widths)
    return y


def _iou(boxes: torch.Tensor, center_point_box: int) -> torch.Tensor:
    b = boxes.to(torch.float64)
    if center_point_box:
        x1 = b[:, 0] - b[:, 2] / 2
        x2 = b[:, 0] + b[:, 2] / 2
        y1 = b[:, 1] - b[:, 3] / 2
        y2 = b[:, 1] + b[:, 3] / 2
    else:
        y1 = torch.minimum(b[:, 0], b[:, 2])
        y2 = torch.maximum(b[:, 0], b[:, 2])
        x1 = torch.minimum(b[:, 1], b[:, 3])
        x2 = torch.maximum(b[:, 1], b[:, 3])
    area = (x2 - x1) * (y2 - y1)
    iw = (torch.minimum(x2[:, None], x2[None, :]) - torch.maximum(x1[:, None], x1[None, :]))
    ih = (torch.minimum(y2[:, None], y2[None, :]) - torch.maximum(y1[:, None], y1[None, :]))
    inter = torch.where((iw > 0) & (ih > 0), iw * ih, torch.zeros_like(iw))
    union = area[:, None] + area[None, :] - inter
    ok = (inter > 0) & (area[:, None] > 0) & (area[None, :] > 0) & (union > 0)
    return torch.where(ok, inter / torch.where(union > 0, union, torch.ones_like(union)), torch.zeros_like(inter))


def non_max_suppression(boxes: torch.Tensor, scores: torch.Tensor, max_per_class, iou_threshold,
                        score_threshold, center_point_box: int) -> torch.Tensor:
    """ONNX NonMaxSuppression: (K, 3) int64 rows of [batch, class, box], greedy per batch and class."""
    def scalar(v, default):
        if v is None:
            return default
        if isinstance(v, torch.Tensor):
            return v.reshape(-1)[0].item() if v.numel() else default
        return v

    limit = max(int(scalar(max_per_class, 0)), 0)
    iou_t = float(scalar(iou_threshold, 0.0))
    score_t = scalar(score_threshold, None)
    rows: List[List[int]] = []
    for bi in range(boxes.shape[0]):
        iou = _iou(boxes[bi], center_point_box) if limit > 0 else None
        for ci in range(scores.shape[1]):
            s = scores[bi, ci]
            cand = torch.arange(s.shape[0], device=s.device)
            if score_t is not None:
                cand = cand[s > float(score_t)]
            order = cand[torch.sort(s[cand].to(torch.float64), descending=True, stable=True).indices]
            kept: List[int] = []
            for j in order.tolist():
                if len(kept) >= limit:
                    break
                if kept and bool((iou[j, kept] > iou_t).any()):
                    continue
                kept.append(j)
                rows.append([bi, ci, j])
    if not rows:
        return torch.zeros(0, 3, dtype=torch.int64, device=boxes.device)
    return torch.tensor(rows, dtype=torch.int64, device=boxes.device)


def affine_grid(theta: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    return F.affine_grid(theta, _as_ints(size), align_corners=align_corners)


def dropout_mask(x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape, dtype=torch.bool, device=x.device)


def train_dropout(x: torch.Tensor, ratio) -> tuple:
    """Dropout in training mode: random output and the mask that produced it."""
    r = float(ratio.reshape(-1)[0].item()) if isinstance(ratio, torch.Tensor) else float(ratio)
    if r == 0.0:
        return x, torch.ones(x.shape, dtype=torch.bool, device=x.device)
    keep = torch.rand(x.shape, device=x.device) >= r
    return torch.where(keep, x / (1.0 - r), torch.zeros_like(x)), keep


def dropout(x: torch.Tensor, ratio, training) -> tuple:
    """Dropout whose training_mode is only known at run time (a tensor, or the module's ``training``)."""
    if training if isinstance(training, bool) else bool(training.reshape(-1)[0]):
        return train_dropout(x, ratio)
    return x, dropout_mask(x)
