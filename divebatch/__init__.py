"""DiveBatch Lab: gradient-diversity-driven adaptive batch sizes for PyTorch SGD.

Public API (DESIGN.md section 2), imported lazily so `import divebatch` stays cheap:

>>> import divebatch
>>> divebatch.RunConfig().method
'divebatch'
"""

from importlib import import_module

_EXPORTS = {
    "per_sample_grad_sq_norms": "meter.diversity", "gradient_diversity": "meter.diversity",
    "DiversityMeter": "meter.diversity",
    "FixedBatch": "schedulers", "AdaBatch": "schedulers", "DiveBatch": "schedulers",
    "RunConfig": "config",
    "train": "training.trainer", "EpochRecord": "training.records",
    "RunResult": "training.records", "LocalControl": "training.controls",
    "RunStore": "runs.store",
}

__all__ = sorted(_EXPORTS)  # and __version__, the installed version


def _installed_version() -> str:
    """This package's installed version, "(not installed)" in a source tree never installed."""
    from importlib import metadata
    try:
        return metadata.version("divebatch")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def __getattr__(name: str):
    if name == "__version__":  # read from the metadata only when asked (20 ms)
        globals()[name] = _installed_version()
        return globals()[name]
    if name not in _EXPORTS:
        raise AttributeError(f"module 'divebatch' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__, "__version__"})
