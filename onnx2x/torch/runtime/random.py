"""Random generators for ONNX RandomNormal/Uniform(-Like), Multinomial and Bernoulli.

A ``seed`` gives a fixed private generator, so a seeded node draws the same numbers on every
call (as ONNX intends); unseeded nodes use torch's global generator.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch


def _generator(seed: Optional[float]) -> Optional[torch.Generator]:
    if seed is None:
        return None
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def normal(shape: Sequence[int], mean: float, scale: float, dtype: torch.dtype,
           seed: Optional[float] = None) -> torch.Tensor:
    out = torch.randn(tuple(shape), generator=_generator(seed), dtype=torch.float64) * scale + mean
    return out.to(dtype)


def uniform(shape: Sequence[int], low: float, high: float, dtype: torch.dtype,
            seed: Optional[float] = None) -> torch.Tensor:
    out = torch.rand(tuple(shape), generator=_generator(seed), dtype=torch.float64) * (high - low) + low
    return out.to(dtype)


def normal_like(x: torch.Tensor, mean: float, scale: float, dtype: Optional[torch.dtype],
                seed: Optional[float] = None) -> torch.Tensor:
    return normal(tuple(x.shape), mean, scale, x.dtype if dtype is None else dtype, seed)


def uniform_like(x: torch.Tensor, low: float, high: float, dtype: Optional[torch.dtype],
                 seed: Optional[float] = None) -> torch.Tensor:
    return uniform(tuple(x.shape), low, high, x.dtype if dtype is None else dtype, seed)


def multinomial(logits: torch.Tensor, sample_size: int, dtype: torch.dtype,
                seed: Optional[float] = None) -> torch.Tensor:
    """ONNX Multinomial: ``logits`` are unnormalised log-probabilities, shape (batch, classes)."""
    probs = torch.softmax(logits.to(torch.float64), -1)
    return torch.multinomial(probs, sample_size, replacement=True, generator=_generator(seed)).to(dtype)


def bernoulli(p: torch.Tensor, dtype: Optional[torch.dtype], seed: Optional[float] = None) -> torch.Tensor:
    out = torch.bernoulli(p, generator=_generator(seed))
    return out.to(p.dtype if dtype is None else dtype)
