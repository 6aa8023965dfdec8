"""ONNX DFT, STFT, window functions and MelWeightMatrix on top of ``torch.fft``.

ONNX stores complex signals as a trailing axis of size 2 (real, imaginary) and real signals as a
trailing axis of size 1; these helpers convert to torch complex tensors and back.
"""
from __future__ import annotations

import math
from typing import Optional

import torch


def _to_complex(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] == 1:
        return x[..., 0]
    return torch.complex(x[..., 0], x[..., 1])


def _from_complex(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.stack([y.real, y.imag], -1).to(dtype)


def _scalar_int(v) -> Optional[int]:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return int(v.reshape(-1)[0].item()) if v.numel() else None
    return int(v)


def dft(x: torch.Tensor, dft_length, axis, inverse: bool, onesided: bool) -> torch.Tensor:
    """ONNX DFT along ``axis`` (an int, or a tensor known only at run time) of ``x`` (..., 1 or 2)."""
    rank = x.dim()
    axis = _scalar_int(axis) % rank
    n = _scalar_int(dft_length)
    if n is None:
        n = 2 * (x.shape[axis] - 1) if (inverse and onesided) else x.shape[axis]
    signal = _to_complex(x)
    if inverse:
        if onesided:
            return torch.fft.irfft(signal, n=n, dim=axis).unsqueeze(-1).to(x.dtype)
        return _from_complex(torch.fft.ifft(signal, n=n, dim=axis), x.dtype)
    y = torch.fft.fft(signal, n=n, dim=axis)
    if onesided:
        y = y.narrow(axis, 0, n // 2 + 1)
    return _from_complex(y, x.dtype)


def stft(x: torch.Tensor, frame_step, window: Optional[torch.Tensor], frame_length, onesided: bool) -> torch.Tensor:
    """ONNX STFT of ``x`` (batch, length, 1 or 2): (batch, frames, bins, 2)."""
    step = _scalar_int(frame_step)
    length = _scalar_int(frame_length)
    if length is None:
        length = int(window.shape[0]) if window is not None else int(x.shape[-2])
    frames = x.unfold(1, length, step).movedim(-1, -2)  # (batch, frames, length, 1|2)
    if window is not None:
        frames = frames * window.to(x.dtype).reshape(length, 1)
    return dft(frames, length, 2, False, onesided)


def window(kind: str, size, periodic: bool, dtype: torch.dtype) -> torch.Tensor:
    """Hann, Hamming or Blackman window of ``size`` samples (periodic or symmetric)."""
    n_total = _scalar_int(size)
    denom = n_total if periodic else n_total - 1
    n = torch.arange(n_total, dtype=torch.float64)
    if kind == "hann":
        w = torch.sin(n * math.pi / denom) ** 2
    elif kind == "hamming":
        alpha = 25.0 / 46.0
        w = alpha - (1 - alpha) * torch.cos(n * 2 * math.pi / denom)
    else:
        w = 0.42 - 0.5 * torch.cos(n * 2 * math.pi / denom) + 0.08 * torch.cos(n * 4 * math.pi / denom)
    return w.to(dtype)


def mel_weight_matrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz,
                      dtype: torch.dtype) -> torch.Tensor:
    """ONNX MelWeightMatrix: (dft_length // 2 + 1, num_mel_bins) triangular filters."""
    def num(v):
        return v.reshape(-1)[0].item() if isinstance(v, torch.Tensor) else v

    bins = int(num(num_mel_bins))
    length = int(num(dft_length))
    rate = num(sample_rate)
    low_mel = 2595 * math.log1p(float(num(lower_edge_hertz)) / 700) / math.log(10)
    high_mel = 2595 * math.log1p(float(num(upper_edge_hertz)) / 700) / math.log(10)
    step = (high_mel - low_mel) / (bins + 2)
    points = []
    for i in range(bins + 2):
        hz = 700 * math.expm1((i * step + low_mel) / 2595 * math.log(10))
        points.append(int(((length + 1) * hz) // rate))
    out = torch.zeros(length // 2 + 1, bins, dtype=torch.float64)
    for i in range(bins):
        lo, center, hi = points[i], points[i + 1], points[i + 2]
        if center == lo:
            out[center, i] = 1.0
        else:
            for j in range(lo, center + 1):
                out[j, i] = (j - lo) / (center - lo)
        if hi > center:
            for j in range(center, hi):
                out[j, i] = (hi - j) / (hi - center)
    return out.to(dtype)
