"""Functions the generated forward code calls, when no single torch function does the job.

Rules for every module in this package, so that a saved model can carry their source and run
without this toolkit installed: import only ``torch``, ``math``, ``typing``, ``numbers`` and
``operator`` (the standard library is fine, nothing of this toolkit), define plain
module-level functions, and do not import from each other.
"""
