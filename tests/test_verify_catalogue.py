"""Verification catches every mistranslation of the catalogue and names the node it was injected at.

The other half of "a criterion right for float32 graphs": the scale-aware bounds, the outlier
allowance and the widening by the reference's sensitivity must not let a real conversion error
through. Each entry of tests/support/mistranslations.py is injected into a correct conversion of
the catalogue network, through the CLI a user runs (default flags, verification on): the run
must exit 3, write nothing, and its one error line must name the injected node. The catch rate
is printed in the terminal summary.
"""
from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest

from tests.support.catalogue_net import SHAPE, save_catalogue_network
from tests.support.mistranslations import CATALOGUE, Mistranslation, mxnet_injected, torch_injected

SHAPE_FLAG = "data:" + ",".join(map(str, SHAPE))
RESULTS: dict[str, tuple[bool, bool]] = {}  # key -> (caught with exit 3, injected node named)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The catalogue network as an MXNet checkpoint and its correct ONNX export."""
    from x2onnx.cli import main

    folder = tmp_path_factory.mktemp("catalogue")
    sym, params = save_catalogue_network(folder)
    onnx_path = folder / "net.onnx"
    assert main(["mxnet", str(sym), str(params), "--input-shape", SHAPE_FLAG, "-o", str(onnx_path), "-q"]) == 0
    return sym, params, onnx_path


def test_the_catalogue_is_large_and_covers_both_directions():
    assert len(CATALOGUE) >= 20 and len({m.key for m in CATALOGUE}) == len(CATALOGUE)
    assert {m.direction for m in CATALOGUE} == {"mxnet", "torch"}


def test_correct_conversions_pass(network, tmp_path, capsys):
    """Without an injected error both CLIs accept the network: the catalogue measures errors, not noise."""
    from onnx2x.cli import main as onnx2x_main

    _, _, onnx_path = network
    assert onnx2x_main(["torch", str(onnx_path), "-o", str(tmp_path / "net.pt"), "-q"]) == 0


def _error_line(text: str) -> str:
    """The one ``error:`` line of a run ('' when there is none)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) <= 1, text
    return lines[0] if lines else ""


def _onnx_node_name(model_path: Path, output: str) -> str:
    model = onnx.load(str(model_path), load_external_data=False)
    return next(n.name or n.output[0] for n in model.graph.node if output in n.output)


@pytest.mark.parametrize("m", CATALOGUE, ids=[m.key for m in CATALOGUE])
def test_mistranslation_is_caught_and_named(m: Mistranslation, network, tmp_path, capsys):
    sym, params, onnx_path = network
    out = tmp_path / "out"
    if m.direction == "mxnet":
        from x2onnx.cli import main

        with mxnet_injected(m):
            code = main(["mxnet", str(sym), str(params), "--input-shape", SHAPE_FLAG, "-o", str(out / "net.onnx")])
        named = m.node
    else:
        from onnx2x.cli import main

        named = _onnx_node_name(onnx_path, m.node)
        with torch_injected(m, named):
            code = main(["torch", str(onnx_path), "-o", str(out / "net.pt")])
    line = _error_line(capsys.readouterr().err)
    caught = code == 3 and bool(line)
    where = re.match(r"error: [^:]+: ([^:]+?) \(([^)]*)\): ", line)
    located = where is not None and where.group(1) == named
    RESULTS[m.key] = (caught, located)
    assert caught, f"{m.description}: not refused (exit {code}) {line}"
    assert not out.exists() or not any(out.iterdir()), "a refused conversion wrote files"
    assert located, f"expected node {named!r} ({m.description}) in: {line}"
