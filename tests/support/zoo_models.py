"""Gluon model-zoo networks with seeded weights on which float32 is accurate to well below 1e-4.

No pretrained weights are downloaded, and naive random weights make a poor test: deep
BatchNorm networks at random initialisation are chaotic, so float32 rounding grows
exponentially with depth. Measured against a float64 run of the same MXNet graph, MXNet's own
float32 output was off by 0.6 (ResNet-101 v1 with made-up BatchNorm statistics, logits ~6e5) and
still by 3e-3 with measured statistics alone (ResNet-152 v1). No converter can then agree with
MXNet within 1e-4, while a relative tolerance on huge logits hides real errors. Trained networks are far better conditioned, and the weights here
imitate them:

- convolutions and dense layers He-initialised; BatchNorm gamma ~ U(0.5, 1.5) and beta ~
  N(0.5, 0.3) (about a third of the units below zero still get clipped by the ReLU);
- every residual branch ends scaled by U(0, 0.1) per channel (the last BatchNorm's gamma in v1
  blocks and MobileNetV2's shortcut blocks, the last convolution in pre-activation v2 blocks),
  as zero-gamma initialisation and trained ResNets have it; the branches still contribute;
- BatchNorm running statistics are *measured*, as training would: one training-mode pass over
  a seeded calibration batch (uniform in [-1, 1] like the verification inputs, another seed);
- the classifier is rescaled so the logits have a standard deviation of ~2 on that batch (VGG's
  stock initialisation leaves them at ~1e-3, where an absolute 1e-4 tolerance means little).

:func:`float32_error` measures what float32 costs on a given input; the tests assert it stays
far below their tolerance, so the comparisons keep measuring the conversion.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

MODELS = [
    *(f"resnet{d}_v{v}" for v in (1, 2) for d in (18, 34, 50, 101, 152)),
    *(f"vgg{d}{bn}" for bn in ("", "_bn") for d in (11, 13, 16, 19)),
    "alexnet", "densenet121", "densenet161", "densenet169", "densenet201", "squeezenet1.0", "squeezenet1.1",
    "inceptionv3", "mobilenet1.0", "mobilenet0.75", "mobilenet0.5", "mobilenet0.25",
    "mobilenetv2_1.0", "mobilenetv2_0.75", "mobilenetv2_0.5", "mobilenetv2_0.25",
]
# smallest input each architecture accepts (global pooling: 32; fixed-size final pooling needs more)
SIZES = {"alexnet": 64, "densenet": 224, "squeezenet": 224, "inceptionv3": 299}
GAMMA = (0.5, 1.5)  # uniform
BETA = (0.5, 0.3)  # normal (mean, std)
BRANCH_SCALE = (0.0, 0.1)  # uniform, per channel of a residual branch's last layer
LOGIT_STD = 2.0


def input_shape(name: str) -> tuple[int, int, int, int]:
    size = next((s for prefix, s in SIZES.items() if name.startswith(prefix)), 32)
    return (1, 3, size, size)


def _mx() -> Any:
    from mx2onnx_patches.mxnet_import import import_mxnet

    return import_mxnet()


def gluon_vision() -> Any:
    """``mxnet.gluon.model_zoo.vision``, imported with the numpy aliases MXNet needs restored."""
    _mx()
    from mxnet.gluon.model_zoo import vision

    return vision


def _walk(block: Any) -> Iterator[Any]:
    yield block
    for child in block._children.values():
        yield from _walk(child)


def _batchnorms(net: Any) -> list[Any]:
    from mxnet.gluon import nn

    return [b for b in _walk(net) if isinstance(b, nn.BatchNorm)]


def _residual_branch_ends(net: Any) -> Iterator[Any]:
    """The layer each residual branch of the zoo's block types ends with (BatchNorm or Conv2D)."""
    for block in _walk(net):
        kind = type(block).__name__
        if kind in ("BasicBlockV1", "BottleneckV1"):
            yield block.body[len(block.body) - 1]
        elif kind in ("BasicBlockV2", "BottleneckV2"):
            yield getattr(block, "conv3", None) or block.conv2
        elif kind == "LinearBottleneck" and block.use_shortcut:
            yield block.out[len(block.out) - 1]


def _scale_channels(layer: Any, factors: np.ndarray) -> None:
    """Multiply a layer's output channels by ``factors`` (BatchNorm: gamma and beta; Conv: weight)."""
    mx = _mx()
    if hasattr(layer, "gamma"):
        layer.gamma.set_data(layer.gamma.data() * mx.nd.array(factors))
        layer.beta.set_data(layer.beta.data() * mx.nd.array(factors))
    else:
        w = layer.weight.data()
        layer.weight.set_data(w * mx.nd.array(factors).reshape((-1,) + (1,) * (w.ndim - 1)))


def randomize_affine(net: Any, rng: np.random.Generator, branch_ends: Iterable[Any]) -> None:
    """Every BatchNorm's gamma and beta drawn at a realistic scale (scale=False / center=False
    layers keep 1 / 0), then each residual branch's last layer in ``branch_ends`` damped per
    channel, so that a block's sum stays near its input's scale."""
    mx = _mx()
    for bn in _batchnorms(net):
        if bn.gamma.grad_req != "null":
            bn.gamma.set_data(mx.nd.array(rng.uniform(*GAMMA, size=bn.gamma.shape)))
        if bn.beta.grad_req != "null":
            bn.beta.set_data(mx.nd.array(rng.normal(*BETA, size=bn.beta.shape)))
    for layer in branch_ends:
        channels = (layer.gamma if hasattr(layer, "gamma") else layer.weight).shape[0]
        _scale_channels(layer, rng.uniform(*BRANCH_SCALE, size=channels))


def calibration_batch(shape: tuple[int, ...], seed: int) -> Any:
    """Seeded inputs uniform in [-1, 1], enough of them that the last, smallest feature maps still
    give each BatchNorm channel ~32 samples."""
    mx = _mx()
    batch = max(4, round(32 * (32 / shape[-1]) ** 2))
    rng = np.random.default_rng(seed + 1)
    return mx.nd.array(rng.uniform(-1, 1, size=(batch, *shape[1:])).astype(np.float32))


def calibrate_batchnorm(net: Any, batch: Any) -> None:
    """Set every BatchNorm's running statistics to its batch statistics on ``batch``.

    MXNet updates running statistics in the *backward* pass (``moving = m * moving + (1 - m) *
    batch``), so the pass is recorded and the input gets a gradient: without it MXNet skips the
    backward of a BatchNorm fed straight by the data (ResNet v2's first layer). Starting from
    zero, one update leaves ``(1 - m) * batch``.
    """
    mx = _mx()
    layers = _batchnorms(net)
    for bn in layers:
        bn.running_mean.set_data(mx.nd.zeros(bn.running_mean.shape))
        bn.running_var.set_data(mx.nd.zeros(bn.running_var.shape))
    batch = batch.copy()
    batch.attach_grad()
    with mx.autograd.record():
        out = net(batch)
        if isinstance(out, (list, tuple)):  # several heads: one loss over all of them
            out = mx.nd.add_n(*[o.sum() for o in out])
    out.backward()
    for bn in layers:
        keep = 1.0 - bn._kwargs["momentum"]
        var = bn.running_var.data().asnumpy() / keep
        if not (var > 0).all():
            raise RuntimeError(f"BatchNorm {bn.name} was not calibrated (variance {var.min()})")
        bn.running_mean.set_data(mx.nd.array(bn.running_mean.data().asnumpy() / keep))
        bn.running_var.set_data(mx.nd.array(var))


def _rescale_logits(net: Any, batch: Any) -> None:
    last = [b for b in _walk(net.output) if getattr(b, "weight", None) is not None][-1]
    factor = LOGIT_STD / float(net(batch).asnumpy().std())
    last.weight.set_data(last.weight.data() * factor)
    if last.bias is not None:
        last.bias.set_data(last.bias.data() * factor)


def zoo_network(name: str, shape: tuple[int, ...], *, seed: int = 0, classes: int = 1000) -> Any:
    """A hybridized model-zoo network with the weights the module docstring describes."""
    mx = _mx()
    mx.random.seed(seed)
    net = gluon_vision().get_model(name, pretrained=False, classes=classes)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    net.hybridize()
    net(mx.nd.zeros(shape))  # deferred shapes (dense layers follow the input size)
    randomize_affine(net, np.random.default_rng(seed), _residual_branch_ends(net))
    batch = calibration_batch(shape, seed)
    calibrate_batchnorm(net, batch)
    _rescale_logits(net, batch)
    mx.nd.waitall()
    return net


def symbol_params(net: Any) -> tuple[Any, dict[str, Any]]:
    """(symbol, {name: NDArray}) of a gluon network, as ``x2onnx.mxnet.export`` takes them."""
    mx = _mx()
    return net(mx.sym.var("data")), {p.name: p.data() for p in net.collect_params().values()}


def save_checkpoint(net: Any, folder: Path, name: str) -> tuple[Path, Path]:
    """``net`` saved as ``NAME-symbol.json`` + ``NAME-0000.params`` (MXNet's checkpoint format)."""
    folder.mkdir(parents=True, exist_ok=True)
    net.export(str(folder / name), epoch=0)
    return folder / f"{name}-symbol.json", folder / f"{name}-0000.params"


def verification_inputs(shape: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """The seeded input the CLIs verify with by default (``data``, uniform in [-1, 1])."""
    from common.verify.inputs import InputSpec, random_inputs

    return random_inputs([InputSpec("data", tuple(shape), "float32")], seed)


def float32_error(symbol: Any, params: dict[str, Any], inputs: dict[str, np.ndarray]) -> float:
    """Max-abs difference between MXNet's float32 and float64 outputs of the same graph on ``inputs``,
    relative to the output's scale (its largest magnitude; the verification's criterion judges
    errors that way): the rounding float32 itself costs, which any converted model's error is
    measured against."""
    mx = _mx()
    group = symbol if len(symbol.list_outputs()) > 1 else mx.sym.Group([symbol])
    names = group.list_arguments() + group.list_auxiliary_states()

    def run(dtype: str) -> list[np.ndarray]:
        ex = group.simple_bind(mx.cpu(), grad_req="null", type_dict={n: dtype for n in names},
                               **{k: v.shape for k, v in inputs.items()})
        for k, v in params.items():
            target = ex.arg_dict.get(k) if k in ex.arg_dict else ex.aux_dict.get(k)
            if target is not None:
                target[:] = v.astype(dtype)
        for k, v in inputs.items():
            ex.arg_dict[k][:] = v.astype(dtype)
        return [o.asnumpy().astype(np.float64) for o in ex.forward(is_train=False)]

    return max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)) for a, b in zip(run("float64"), run("float32")))


def uncalibrated_network(name: str, shape: tuple[int, ...], *, seed: int = 0, magnitude: float = 6.0) -> Any:
    """A model-zoo network as it is before training: Gaussian Xavier weights, BatchNorm statistics
    left at (0, 1). Deep ones output 1e4..1e13 (ResNets) or are ill-conditioned (MobileNetV2):
    what "random init" means when users try a converter, and what verification must not refuse."""
    mx = _mx()
    mx.random.seed(seed)
    net = gluon_vision().get_model(name, pretrained=False)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=magnitude))
    net.hybridize()
    net(mx.nd.zeros(shape))
    mx.nd.waitall()
    return net
