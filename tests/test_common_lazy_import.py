"""``common.lazy_import``: modules created without running their code until first use (the
``until_used`` kind; the default one defers MXNet's and onnxsim's imports in every MXNet test)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.lazy_import import deferring


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``deferpkg`` whose modules record in ``deferpkg.LOADED`` when their code runs;
    ``user`` and ``other`` both import ``heavy`` (as onnx-ir and onnxsim both import sympy)."""
    root = tmp_path / "deferpkg"
    root.mkdir()
    (root / "__init__.py").write_text("LOADED = []\n")
    (root / "heavy.py").write_text("import deferpkg\ndeferpkg.LOADED.append('heavy')\nVALUE = 42\n")
    (root / "broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    for user in ("user", "other"):
        (root / f"{user}.py").write_text(f"import deferpkg.heavy\nimport deferpkg\ndeferpkg.LOADED.append({user!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [n for n in sys.modules if n == "deferpkg" or n.startswith("deferpkg.")]:
        del sys.modules[name]


def test_a_module_imported_twice_runs_on_first_use_and_once(package):
    with deferring(("deferpkg.heavy",), until_used=True):
        import deferpkg.other
        import deferpkg.user
    import deferpkg

    assert deferpkg.LOADED == ["other", "user"]  # heavy was imported twice, its code not run
    heavy = sys.modules["deferpkg.heavy"]
    assert heavy.__spec__.name == "deferpkg.heavy" and deferpkg.LOADED == ["other", "user"]  # import metadata
    assert deferpkg.user.deferpkg.heavy.VALUE == 42  # first use: the code runs
    assert deferpkg.LOADED == ["other", "user", "heavy"]
    assert heavy.VALUE == 42 and deferpkg.LOADED == ["other", "user", "heavy"]  # once


def test_a_failing_deferred_module_fails_at_first_use_and_leaves_no_half_module(package):
    with deferring(("deferpkg.broken",), until_used=True):
        import deferpkg.broken as broken
    with pytest.raises(RuntimeError, match="broken on purpose"):
        broken.anything  # noqa: B018
    assert "deferpkg.broken" not in sys.modules


def test_onnx_ir_and_onnxsim_are_imported_without_sympy_and_torch():
    """Fresh interpreter (the test process has imported both): onnx-ir and onnxsim's package
    import sympy, onnxsim's torch too; none of it runs until used, and then works."""
    code = textwrap.dedent("""
        import sys
        from common.ir import onnx_ir
        from common.simplify import simplify
        from onnx import TensorProto, helper
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["t"]), helper.make_node("Relu", ["t"], ["y"])],
                                  "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
        out = simplify(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), label="t")
        assert [n.op_type for n in out.graph.node] == ["Relu"]
        assert "sympy.core" not in sys.modules and "torch._C" not in sys.modules, "imported at start-up"
        assert str(onnx_ir.SymbolicDim("N") * 2 + 1) == "2*N + 1"
        import sympy
        assert sympy.Symbol("x") + 1 == sympy.Symbol("x") + 1
    """)
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
