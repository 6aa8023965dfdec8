"""Transformer encoders through ``onnx2x torch`` as a user runs it: default flags (simplified,
verified against onnxruntime), then the written artifact against the original PyTorch module at
sequence lengths other than the export's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from onnx2x.cli import main
from onnx2x.torch import artifact
from tests.support.encoder_corpus import VOCAB, encoder, export

CASES = [("bert", 13, False), ("distilbert", 17, False), ("albert", 17, False), ("electra", 17, False)]
SLOW_CASES = [("bert", 17, False), ("bert", 18, True), ("distilbert", 18, True), ("electra", 13, False)]


def _convert_and_compare(family: str, opset: int, dynamo: bool, tmp_path: Path) -> None:
    module = encoder(family)
    src = export(module, tmp_path / f"{family}.onnx", opset=opset, dynamo=dynamo)
    assert main(["torch", str(src), "-o", str(tmp_path / "out" / f"{family}.pt"), "-q"]) == 0
    net = artifact.load(tmp_path / "out" / f"{family}.pt")
    gen = torch.Generator().manual_seed(5)
    for batch, length in ((1, 5), (3, 11)):
        ids = torch.randint(0, VOCAB, (batch, length), generator=gen)
        mask = torch.ones_like(ids)
        mask[0, length - 2:] = 0  # padding at the end of the first sequence
        with torch.no_grad():
            expected, got = module(ids, mask), net(ids, mask)
        got = got[0] if isinstance(got, (tuple, list)) else got
        assert got.shape == expected.shape
        scale = float(expected.abs().max())
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("family,opset,dynamo", CASES)
def test_encoder_converts_and_matches_the_original(family: str, opset: int, dynamo: bool, tmp_path: Path) -> None:
    _convert_and_compare(family, opset, dynamo, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("family,opset,dynamo", SLOW_CASES)
def test_encoder_exporters_and_opsets(family: str, opset: int, dynamo: bool, tmp_path: Path) -> None:
    _convert_and_compare(family, opset, dynamo, tmp_path)
