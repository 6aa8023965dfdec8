"""``common.deferred_import``: placeholders that import a module on first use, and onnx-ir without sympy."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.deferred_import import deferring


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``deferpkg`` whose modules record in ``deferpkg.LOADED`` when they execute."""
    root = tmp_path / "deferpkg"
    root.mkdir()
    (root / "__init__.py").write_text("LOADED = []\n")
    (root / "heavy.py").write_text("import deferpkg\ndeferpkg.LOADED.append('heavy')\nVALUE = 42\n")
    (root / "user.py").write_text("from deferpkg import heavy\nimport deferpkg\ndeferpkg.LOADED.append('user')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "deferpkg"
    for name in [n for n in sys.modules if n == "deferpkg" or n.startswith("deferpkg.")]:
        del sys.modules[name]


def test_a_deferred_module_runs_on_first_use_and_leaves_sys_modules_as_it_was(package):
    with deferring("deferpkg.heavy"):
        assert "deferpkg" not in sys.modules  # locating the submodule did not import its package
        import deferpkg.user as user
    import deferpkg

    assert deferpkg.LOADED == ["user"]  # heavy was bound, not run
    assert "deferpkg.heavy" not in sys.modules  # nobody else's import sees the placeholder
    assert user.heavy.VALUE == 42  # first use: the real module runs
    assert deferpkg.LOADED == ["user", "heavy"]
    assert sys.modules["deferpkg.heavy"].VALUE == 42 and user.heavy.VALUE == 42
    assert deferpkg.LOADED == ["user", "heavy"]  # once


def test_modules_already_imported_or_missing_are_left_alone(package):
    import deferpkg.heavy as real

    with deferring("deferpkg.heavy", "no_such_module_anywhere"):
        import deferpkg.heavy as again
        with pytest.raises(ImportError):
            import no_such_module_anywhere  # noqa: F401
    assert again is real


def test_onnx_ir_is_imported_without_sympy_and_still_does_symbolic_arithmetic():
    """Run in a fresh interpreter: the test process may have imported sympy already."""
    code = textwrap.dedent("""
        import sys
        from common.ir import onnx_ir
        assert "sympy" not in sys.modules, "sympy imported with onnx-ir"
        assert str(onnx_ir.SymbolicDim("N") * 2 + 1) == "2*N + 1"
        assert "sympy" in sys.modules
        import sympy
        assert sympy.Symbol("x") + 1 == sympy.Symbol("x") + 1
    """)
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
