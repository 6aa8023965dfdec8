"""Transformers through ``onnx2x torch`` as a user runs it: default flags (simplified, verified
against onnxruntime), then the written artifact against the original PyTorch module at batch sizes
and sequence lengths other than the export's.

CI runs one exporter/opset per family of the issue; ``-m slow`` runs every family with the
TorchScript exporter at opsets 13 and 17 and with dynamo at opset 18, plus FLAN-T5 (gated GELU) and
MobileViTV2 (Col2Im, GroupNorm; dynamo only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from onnx2x.cli import main
from onnx2x.torch import artifact, convert
from tests.support.encoder_corpus import SEQ2SEQ, TEXT, VISION, encoder, export, sample

CASES = [("bert", 13, False), ("distilbert", 17, False), ("albert", 17, False), ("electra", 17, False),
         ("roberta", 13, False), ("gpt2", 17, False), ("t5_encoder", 13, False), ("t5", 17, False),
         ("vit", 17, False), ("mobilevit", 13, False)]
EXPORTS = [(13, False), (17, False), (18, True)]
# torch's TorchScript exporter cannot write MobileViTV2's fold (Col2Im needs opset 18, and at 18 its
# symbolic fails on the run-time output size): dynamo only.
DYNAMO_ONLY = {"mobilevitv2"}
SLOW_CASES = [(family, opset, dynamo) for family in TEXT + VISION for opset, dynamo in EXPORTS
              if (family, opset, dynamo) not in CASES and (dynamo or family not in DYNAMO_ONLY)]


def _convert_and_compare(family: str, opset: int, dynamo: bool, tmp_path: Path) -> None:
    module = encoder(family)
    src = export(module, tmp_path / f"{family}.onnx", opset=opset, dynamo=dynamo, family=family)
    assert main(["torch", str(src), "-o", str(tmp_path / "out" / f"{family}.pt"), "-q"]) == 0
    net = artifact.load(tmp_path / "out" / f"{family}.pt")
    gen = torch.Generator().manual_seed(5)
    for batch, length in ((1, 5), (3, 11)):  # export: batch 2, length 16
        args = sample(family, batch, length, gen, pad=2)  # right and left padding
        with torch.no_grad():
            expected, got = module(*args), net(*args)
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


EXPORTABLE = [("bert", 13), ("gpt2", 17), ("t5_encoder", 13), ("roberta", 13), ("t5", 17), ("vit", 17)]


@pytest.mark.parametrize("family,opset", EXPORTABLE)
def test_converted_encoder_exports_with_dynamic_batch_and_length(family: str, opset: int, tmp_path: Path) -> None:
    """``torch.export`` of the converted module keeps the export's dynamic axes (batch, and the
    sequence lengths of text models): no shape is read back from a tensor at run time (the
    attention masks' Expand-to-Where and gathered-mask chains are resolved at conversion), and
    the exported program matches the original module at other sizes."""
    module = encoder(family)
    gm = convert(str(export(module, tmp_path / f"{family}.onnx", opset=opset, family=family)))
    gen = torch.Generator().manual_seed(11)
    batch = torch.export.Dim("batch", min=1, max=64)
    if family in VISION:
        dims: tuple = ({0: batch},)
    else:
        length = torch.export.Dim("length", min=2, max=64)
        dims = ({0: batch, 1: length}, {0: batch, 1: length})
        if family in SEQ2SEQ:
            dims += ({0: batch, 1: torch.export.Dim("decoder_length", min=2, max=64)},)
    program = torch.export.export(gm, sample(family, 2, 16, gen), dynamic_shapes=dims)
    args = sample(family, 3, 9, gen, pad=2)
    with torch.no_grad():
        expected, got = module(*args), program.module()(*args)
    got = got[0] if isinstance(got, (tuple, list)) else got
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=1e-5 * float(expected.abs().max()))


def test_corpus_outputs_depend_on_the_input() -> None:
    """A comparison is only worth something if the reference output varies with the input: the
    corpus's random weights must not wash the signal out (MobileViT's did with a fixed std)."""
    gen = torch.Generator().manual_seed(7)
    for family in ("gpt2", "t5", "mobilevit", "mobilevitv2"):
        with torch.no_grad():
            out = encoder(family)(*sample(family, 2, 6, gen))
        spread = float((out[0] - out[1]).abs().max()) / float(out.abs().max())
        assert spread > 0.1, f"{family}: output almost independent of the input ({spread:.2g})"
