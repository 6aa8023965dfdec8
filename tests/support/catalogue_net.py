"""A small MXNet network with realistic weights in which every mistranslation of the catalogue has a place.

The mistranslation catalogue (tests/support/mistranslations.py) injects one realistic conversion
error at one node and checks that verification refuses the result and names that node. Its
network has the layer types the injected errors concern, with the conditioning of a trained
network (He-initialised layers, small non-zero biases, BatchNorm statistics measured on a
calibration batch, logits of standard deviation ~2; see tests/support/zoo_models.py), so that the verification has to tell
realistic errors from float32 noise:

    data (1, 3, 32, 32)
    stem: conv0 3x3 -> bn0 -> relu0 -> pool0 (max 3x3/2, pooling_convention='full')
    block: conv1a -> bn1a -> relu1a -> conv1b -> bn1b, + stem -> leaky1 (LeakyReLU 0.25)
    conv2 3x3/2 -> bn2 -> relu2 -> avg2 (avg 3x3/1, count_include_pad=False)
    up2 (UpSampling nearest x2) -> slice_axis a/b -> concat3 (b, a) -> conv3 1x1 -> clip3 (relu6)
    head_seg: conv_seg 1x1 -> softmax over channels (output "seg")
    head_cls: global avg pool -> flatten -> fc_cls (output "logits")
    head_aux: slice_w (columns 1..16) -> mean over H and W (output "aux")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.support.zoo_models import BETA, GAMMA, _batchnorms, _mx, calibrate_batchnorm, calibration_batch

SHAPE = (1, 3, 32, 32)
LOGIT_STD = 2.0


def _block_class() -> Any:
    mx = _mx()
    nn = mx.gluon.nn

    class CatalogueNet(mx.gluon.HybridBlock):
        def __init__(self) -> None:
            super().__init__(prefix="")
            with self.name_scope():
                self.conv0 = nn.Conv2D(16, 3, padding=1, prefix="conv0_")
                self.bn0 = nn.BatchNorm(prefix="bn0_")
                self.conv1a = nn.Conv2D(16, 3, padding=1, prefix="conv1a_")
                self.bn1a = nn.BatchNorm(prefix="bn1a_")
                self.conv1b = nn.Conv2D(16, 3, padding=1, prefix="conv1b_")
                self.bn1b = nn.BatchNorm(prefix="bn1b_")
                self.conv2 = nn.Conv2D(32, 3, strides=2, padding=1, prefix="conv2_")
                self.bn2 = nn.BatchNorm(prefix="bn2_")
                self.conv3 = nn.Conv2D(32, 1, prefix="conv3_")
                self.conv_seg = nn.Conv2D(5, 1, prefix="conv_seg_")
                self.fc_cls = nn.Dense(10, prefix="fc_cls_")
                self.output = self.fc_cls

        def hybrid_forward(self, F: Any, x: Any) -> Any:
            x = F.Activation(self.bn0(self.conv0(x)), act_type="relu", name="relu0")
            stem = F.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max",
                             pooling_convention="full", name="pool0")
            y = F.Activation(self.bn1a(self.conv1a(stem)), act_type="relu", name="relu1a")
            y = self.bn1b(self.conv1b(y))
            y = F.LeakyReLU(F.elemwise_add(y, stem, name="add1"), act_type="leaky", slope=0.25, name="leaky1")
            y = F.Activation(self.bn2(self.conv2(y)), act_type="relu", name="relu2")
            y = F.Pooling(y, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="avg",
                          count_include_pad=False, name="avg2")
            y = F.UpSampling(y, scale=2, sample_type="nearest", name="up2")
            a = F.slice_axis(y, axis=1, begin=0, end=16, name="slice_a")
            b = F.slice_axis(y, axis=1, begin=16, end=32, name="slice_b")
            y = F.concat(b, a, dim=1, name="concat3")
            y = F.clip(self.conv3(y), 0.0, 6.0, name="clip3")
            seg = F.softmax(self.conv_seg(y), axis=1, name="seg")
            pooled = F.Pooling(y, kernel=(1, 1), global_pool=True, pool_type="avg", name="gap")
            logits = self.fc_cls(F.flatten(pooled, name="flat"))
            aux = F.mean(F.slice_axis(y, axis=3, begin=1, end=17, name="slice_w"), axis=(2, 3), name="aux")
            return logits, seg, aux

    return CatalogueNet


def catalogue_network(seed: int = 0) -> Any:
    """The hybridized network with seeded, realistically scaled weights."""
    mx = _mx()
    mx.random.seed(seed)
    net = _block_class()()
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    net.hybridize()
    net(mx.nd.zeros(SHAPE))
    rng = np.random.default_rng(seed)
    for layer in (net.conv0, net.conv1a, net.conv1b, net.conv2, net.conv3, net.conv_seg, net.fc_cls):
        layer.bias.set_data(mx.nd.array(rng.normal(0.0, 0.1, size=layer.bias.shape)))
    for bn in _batchnorms(net):
        bn.gamma.set_data(mx.nd.array(rng.uniform(*GAMMA, size=bn.gamma.shape)))
        bn.beta.set_data(mx.nd.array(rng.normal(*BETA, size=bn.beta.shape)))
    batch = calibration_batch(SHAPE, seed)
    calibrate_batchnorm(net, batch)
    factor = LOGIT_STD / float(net(batch)[0].asnumpy().std())
    net.fc_cls.weight.set_data(net.fc_cls.weight.data() * factor)
    net.fc_cls.bias.set_data(net.fc_cls.bias.data() * factor)
    mx.nd.waitall()
    return net


def save_catalogue_network(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """``net-symbol.json`` + ``net-0000.params`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    catalogue_network(seed).export(str(folder / "net"), epoch=0)
    return folder / "net-symbol.json", folder / "net-0000.params"
