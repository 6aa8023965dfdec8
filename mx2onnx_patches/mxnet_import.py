"""Import MXNet safely: numpy aliases first, and one clear line when the extra is missing."""
from __future__ import annotations

import os
from types import ModuleType

from common.errors import ConversionError
from common.lazy_import import deferring

from .numpy_compat import restore_numpy_aliases

# Imported by ``import mxnet`` but never used by export or verification: created lazily (their
# code, with scipy.stats, runs only if something reads them): 2-3 s of MXNet's import.
_UNUSED_AT_IMPORT = ("mxnet.test_utils", "mxnet.contrib.quantization")

INSTALL_HINT = 'MXNet is not installed; install the extra: pip install -c constraints.txt -e ".[mxnet]"'


class MXNetMissingError(ConversionError):
    """The optional MXNet dependency is not installed."""


def import_mxnet() -> ModuleType:
    # MXNet prints "Subgraph backend MKLDNN is activated" on every bind unless told not to
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    restore_numpy_aliases()
    try:
        with deferring(_UNUSED_AT_IMPORT):
            import mxnet  # noqa: F401
    except ImportError as exc:
        raise MXNetMissingError(INSTALL_HINT) from exc
    return mxnet
