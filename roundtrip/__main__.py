"""``python -m roundtrip``: the same as the ``roundtrip`` command."""
import sys

from .cli import main

sys.exit(main())
