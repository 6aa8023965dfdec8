"""``common.lazy_import`` applied to onnx-ir: imported without sympy, which loads on first use."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_onnx_ir_is_imported_without_sympy_and_still_does_symbolic_arithmetic():
    """Run in a fresh interpreter: the test process may have imported sympy already."""
    code = textwrap.dedent("""
        import sys
        from common.ir import onnx_ir
        assert "sympy.core" not in sys.modules, "sympy imported with onnx-ir"
        assert str(onnx_ir.SymbolicDim("N") * 2 + 1) == "2*N + 1"
        assert "sympy.core" in sys.modules
        import sympy
        assert sympy.Symbol("x") + 1 == sympy.Symbol("x") + 1
    """)
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
