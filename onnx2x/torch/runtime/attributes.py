"""Cheaper ``self.<weight>`` reads in a converted module's forward.

Why: the forward code reads every parameter and buffer as ``self.name``. On an ``nn.Module`` that
lookup misses the instance, then runs ``Module.__getattr__`` (Python) to find the name in
``_parameters``, ``_buffers`` or ``_modules``: 0.4 us a read. A small exported graph reads a few
dozen per call (a two-layer BERT 42), 5-10% of a batch-1 forward that onnxruntime runs in 0.2 ms.
A descriptor on the module's class finds the same entry in about 0.1 us.

Each descriptor reads the live dictionary on every call, and only reads (a non-data descriptor):
assigning a new ``nn.Parameter``, ``.to()``, ``load_state_dict`` (``assign=True`` too),
``register_parametrization`` (its property, a data descriptor of a subclass, wins) and deleting
the attribute behave as on any module.
"""
import torch

_STORES = ("_parameters", "_buffers", "_modules")


class StoredAttribute:
    """``module.<name>`` read from ``module.<store>[name]``, else as nn.Module would."""

    __slots__ = ("store", "name")

    def __init__(self, store, name):
        self.store = store
        self.name = name

    def __get__(self, module, owner=None):
        if module is None:
            return self
        try:
            return module.__dict__[self.store][self.name]
        except KeyError:  # moved to another store or deleted: nn.Module's answer (or AttributeError)
            return torch.nn.Module.__getattr__(module, self.name)


def read_attributes_through_classes(model, classes):
    """Give each class in ``classes`` a :class:`StoredAttribute` for every parameter, buffer and
    submodule of ``model``'s modules of that class, unless the class defines the name already."""
    for module in model.modules():
        cls = type(module)
        if cls not in classes:
            continue
        for store in _STORES:
            for name in module.__dict__[store]:
                if name.isidentifier() and not hasattr(cls, name) and name not in module.__dict__:
                    setattr(cls, name, StoredAttribute(store, name))
