"""Optimizer update rules of the ai.onnx.preview.training domain (Adagrad, Adam, Momentum)."""
from __future__ import annotations

from typing import Any, List, Sequence

import torch


def adagrad(r: torch.Tensor, t: torch.Tensor, xs: Sequence[torch.Tensor], gs: Sequence[torch.Tensor],
            hs: Sequence[torch.Tensor], decay_factor: float, epsilon: float, norm_coefficient: float) -> List[torch.Tensor]:
    """Returns the new xs followed by the new accumulated squared gradients."""
    rate = r / (1 + t * decay_factor)
    new_x, new_h = [], []
    for x, g, h in zip(xs, gs, hs):
        g = norm_coefficient * x + g
        h = h + g * g
        new_x.append((x - rate * g / (torch.sqrt(h) + epsilon)).to(x.dtype))
        new_h.append(h)
    return new_x + new_h


def adam(r: torch.Tensor, t: torch.Tensor, xs: Sequence[torch.Tensor], gs: Sequence[torch.Tensor],
         vs: Sequence[torch.Tensor], hs: Sequence[torch.Tensor], alpha: float, beta: float, epsilon: float,
         norm_coefficient: float, norm_coefficient_post: float) -> List[torch.Tensor]:
    """Returns the new xs, then first moments, then second moments."""
    tf = t.to(torch.float64)
    corrected = r * torch.sqrt(1 - beta ** tf) / (1 - alpha ** tf)
    rate = torch.where(t > 0, corrected, r.to(torch.float64))
    out_x, out_v, out_h = [], [], []
    for x, g, v, h in zip(xs, gs, vs, hs):
        g = norm_coefficient * x + g
        v = alpha * v + (1 - alpha) * g
        h = beta * h + (1 - beta) * g * g
        x_new = x - (rate * (v / (torch.sqrt(h) + epsilon))).to(x.dtype)
        out_x.append(((1 - norm_coefficient_post) * x_new).to(x.dtype))
        out_v.append(v)
        out_h.append(h)
    return out_x + out_v + out_h


def momentum(r: torch.Tensor, t: torch.Tensor, xs: Sequence[torch.Tensor], gs: Sequence[torch.Tensor],
             vs: Sequence[torch.Tensor], alpha: float, beta: float, norm_coefficient: float,
             nesterov: bool) -> List[torch.Tensor]:
    """Returns the new xs followed by the new momenta (gradient weight 1 on the first step)."""
    b = torch.where(t > 0, torch.tensor(beta, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    out_x, out_v = [], []
    for x, g, v in zip(xs, gs, vs):
        g = norm_coefficient * x + g
        v_new = (alpha * v + b * g).to(v.dtype)
        step = g + alpha * v_new if nesterov else v_new
        out_x.append((x - r * step).to(x.dtype))
        out_v.append(v_new)
    return out_x + out_v


def gradient(fn: Any, xs: Sequence[torch.Tensor], others: Sequence[Any]) -> List[torch.Tensor]:
    """ONNX Gradient: d(sum of y)/dx for each x, by re-running the forward slice ``fn`` under autograd."""
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_(True) for x in xs]
        y = fn(*leaves, *others)
        grads = torch.autograd.grad(y, leaves, grad_outputs=torch.ones_like(y), allow_unused=True)
    return [torch.zeros_like(x) if g is None else g.detach() for x, g in zip(xs, grads)]
