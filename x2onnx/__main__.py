"""``python -m x2onnx`` is the ``x2onnx`` command."""
import sys

from .cli import main

sys.exit(main())
