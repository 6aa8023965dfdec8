"""Hand-built PyTorch nets (``tests/support/small_nets.py``) exported by ``torch.onnx.export`` and
converted back with default flags compute what the eager modules compute, at a batch and (for
the recurrent nets and the UNet stage) a sequence length or image size other than the export's; the recurrent kernels' cached
parameter order follows in-place weight updates and gives way to autograd."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from onnx2x.torch import convert
from onnx2x.torch.runtime import rnn as rt_rnn
from tests.support import small_nets


@pytest.mark.parametrize("name", list(small_nets.NETS))
def test_converted_net_matches_the_eager_module(name: str, tmp_path: Path) -> None:
    net = small_nets.build(name)
    gm = convert(str(small_nets.export(net, name, tmp_path / f"{name}.onnx")))
    gen = torch.Generator().manual_seed(7)
    for batch in (1, 3):
        x = small_nets.sample(name, batch, gen)
        if name in ("lstm_bi", "gru"):
            x = x[:, :11]  # another sequence length than the export's
        if name == "unet_up_block":
            x = x[:, :, :20, :14]  # another image size than the export's
        with torch.no_grad():
            want = net(x)
            torch.testing.assert_close(gm(x), want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_recurrent_weights_changed_in_place_are_reordered_again(tmp_path: Path) -> None:
    net = small_nets.build("lstm_bi")
    gm = convert(str(small_nets.export(net, "lstm_bi", tmp_path / "lstm.onnx")))
    x = small_nets.sample("lstm_bi", 2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        rt_rnn.clear_reordered_weights()
        before = gm(x)
        assert len(rt_rnn._TORCH_ORDER) >= 2  # one entry per LSTM node's W
        assert all(params is None for _, params in rt_rnn._TORCH_ORDER.values())  # one call keeps no copy
        torch.testing.assert_close(gm(x), before, rtol=0, atol=0)
        assert all(params is not None for _, params in rt_rnn._TORCH_ORDER.values())  # the second keeps it
        for name, p in gm.named_parameters():
            p.mul_(0.5)
        for module_p in net.parameters():
            module_p.mul_(0.5)
        after = gm(x)
        torch.testing.assert_close(after, net(x), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(before, after)


def test_trainable_recurrent_conversion_gets_gradients_like_the_eager_module(tmp_path: Path) -> None:
    """ONNX GRU's W [1, 3H, I] holds torch's ``weight_ih_l0`` with the gate blocks z, r, h where
    torch has r, z, n: the gradients reach W through the (uncached) reordering."""
    net = small_nets.build("gru")
    gm = convert(str(small_nets.export(net, "gru", tmp_path / "gru.onnx")), trainable=True)
    x = small_nets.sample("gru", 2, torch.Generator().manual_seed(4))
    gm(x).square().sum().backward()
    net(x).square().sum().backward()
    w = next(p for p in gm.parameters() if p.dim() == 3 and p.shape[-1] == x.shape[-1])
    r, z, n = net.rnn.weight_ih_l0.grad.split(64)
    torch.testing.assert_close(w.grad[0], torch.cat([z, r, n]), rtol=1e-4, atol=1e-6)


def test_recurrent_weights_edited_through_data_need_the_cache_cleared(tmp_path: Path) -> None:
    """``.data`` edits bypass the version counter (as for the packed convolution weights): the
    documented clear function makes the next call reorder again."""
    net = small_nets.build("gru")
    gm = convert(str(small_nets.export(net, "gru", tmp_path / "gru.onnx")))
    x = small_nets.sample("gru", 2, torch.Generator().manual_seed(5))
    with torch.no_grad():
        gm(x)
        for p in list(gm.parameters()) + list(net.parameters()):
            p.data.mul_(0.5)
        rt_rnn.clear_reordered_weights()
        torch.testing.assert_close(gm(x), net(x), rtol=1e-4, atol=1e-6)
