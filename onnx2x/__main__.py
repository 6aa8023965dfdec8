"""``python -m onnx2x``: the same as the ``onnx2x`` command."""
import sys

from .cli import main

sys.exit(main())
