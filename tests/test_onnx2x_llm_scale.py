"""LLM-scale conversion: a Llama-style decoder with its weights in an external data file.

One path at two sizes (``tests/support/llama_onnx.py`` builds both without holding the weights):

* ``onnx2x torch`` with default flags (verification against onnxruntime on the same file); for the
  big model in a fresh process run in the model's folder, its peak memory measured
  (``tests/support/peak_memory.py``), for the toy one here, from another folder;
* onnxruntime on a prompt (no past) and on one decoding step fed the prompt's ``present`` key/value
  cache, against the written artifact loaded with ``load(mmap=True)`` (its weights must be pages
  of the ``.pt`` file, not copies);
* the decoding step must equal the last position of the whole sequence run at once (the cache is
  used as a cache).

The 1.01e9-parameter model (4.0 GB of float32) runs under ``pytest -m slow`` and must convert
with at most 1.2 copies of its weights at peak; the toy-size model runs by default.
"""
from __future__ import annotations

import gc
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

from onnx2x.cli import main
from onnx2x.torch import artifact
from tests.support.llama_onnx import LLAMA_1B, LLAMA_TINY, LlamaConfig, build, feeds
from tests.support.peak_memory import mapped_file, measure_in_subprocess

PROMPT, BATCH = 6, 1
MAX_PEAK_COPIES = 1.2


def _onnxruntime_runs(path, cfg: LlamaConfig, prompt: np.ndarray, token: np.ndarray) -> dict[str, list[np.ndarray]]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    first = session.run(None, feeds(cfg, prompt))
    step = session.run(None, feeds(cfg, token, first[1:]))
    whole = session.run(None, feeds(cfg, np.concatenate([prompt, token], axis=1)))
    return {"prompt": first, "step": step, "whole": whole}


def _torch_run(net: torch.nn.Module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = net(*[torch.from_numpy(inputs[n]) for n in net.ONNX_INPUT_NAMES])
    return [t.numpy() for t in out]


def _convert_and_check(tmp_path, cfg: LlamaConfig, *, atol: float, measure: bool) -> dict:
    model = build(tmp_path / "model", cfg, seed=0)
    weight_bytes = os.path.getsize(str(model) + ".data")
    out = tmp_path / "out" / "llama.pt"
    # default flags: verified against onnxruntime on the same file
    if measure:  # in a fresh process, run in the model's folder as the docs show it
        measured = measure_in_subprocess("cli", model.name, out, cwd=model.parent)
        assert "error" not in measured, measured.get("stderr", measured)
        copies = measured["peak_mb"] * 2**20 / weight_bytes
        print(f"\n{cfg.parameters / 1e9:.3g}e9 parameters, {weight_bytes / 2**30:.2f} GiB of weights: onnx2x torch "
              f"took {measured['seconds']:.1f} s, peak memory {measured['peak_mb'] / 1024:.2f} GiB above the "
              f"process baseline = {copies:.2f} copies of the weights")
    else:  # here, from another folder
        assert main(["torch", str(model), "-o", str(out)]) == 0
        measured, copies = {}, None
    assert out.is_file() and out.with_suffix(".py").is_file()

    rng = np.random.default_rng(1)
    prompt = rng.integers(0, cfg.vocab, (BATCH, PROMPT))
    token = rng.integers(0, cfg.vocab, (BATCH, 1))
    expected = _onnxruntime_runs(model, cfg, prompt, token)
    gc.collect()  # the session's weights go before the module's pages come in

    net = artifact.load(out, mmap=True)
    files = {mapped_file(t.data_ptr()) for t in net.state_dict().values() if t.numel()}
    assert files == {str(out.resolve())}, f"load(mmap=True) gave tensors outside the weights file: {files}"
    got_prompt = _torch_run(net, feeds(cfg, prompt))
    got_step = _torch_run(net, feeds(cfg, token, got_prompt[1:]))
    names = ["logits"] + [f"present.{i}.{k}" for i in range(cfg.layers) for k in ("key", "value")]
    for stage, got in (("prompt", got_prompt), ("decoding step", got_step)):
        want = expected["prompt" if stage == "prompt" else "step"]
        assert len(got) == len(want) == len(names)
        for name, g, w in zip(names, got, want):
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=atol, err_msg=f"{stage}: {name}")
    # the cache is a cache: one step after the prompt == the whole sequence at once
    np.testing.assert_allclose(got_step[0][:, -1], expected["whole"][0][:, -1], rtol=1e-3, atol=atol)
    assert got_step[1].shape == (BATCH, cfg.kv_heads, PROMPT + 1, cfg.head_dim)
    return {"copies": copies, **measured}


def test_llama_shaped_decoder_with_external_data_converts_and_decodes(tmp_path):
    """The toy-size model through the whole path: external data, CLI with verification, mmap load,
    prompt and cached decoding step against onnxruntime."""
    assert os.path.getsize(build(tmp_path / "probe", LLAMA_TINY).with_suffix(".onnx.data")) == LLAMA_TINY.parameters * 4
    _convert_and_check(tmp_path, LLAMA_TINY, atol=1e-5, measure=False)


@pytest.mark.slow
def test_llama_1b_with_external_data_converts_within_1_2_weight_copies(tmp_path):
    """A 1.01e9-parameter decoder (4.0 GB of float32 in external data): peak memory of the
    conversion <= 1.2 copies of the weights, outputs as onnxruntime's on a prompt and a
    cached decoding step, artifact memory-mapped."""
    assert LLAMA_1B.parameters >= 1e9 and LLAMA_1B.parameters * 4 > 2**31
    found = _convert_and_check(tmp_path, LLAMA_1B, atol=1e-3, measure=True)
    assert found["copies"] <= MAX_PEAK_COPIES, f"peak memory {found['copies']:.2f} weight copies"
