"""numpyro_transport: annealed stochastic transport, an exact particle sampler with evidence.

The top level holds what a user calls. The building blocks (``driver``, ``sweep``, ``drift``,
``moves``, ``warmup``, ``pimh``, ``blackjax_api``, …) are importable from their modules.
Importing the package loads no plotting or table library and registers nothing: the ArviZ
conversion, [`compare_samplers`][numpyro_transport.comparison.compare_samplers] and
[`compare_models`][numpyro_transport.model_comparison.compare_models] load ArviZ and pandas when
first used. ``compare``, the former name of ``compare_samplers``, is a deprecated alias
kept for one release.
"""

import importlib

# NumPyro before ArviZ: arviz-base loads numpyro lazily (lazy_loader), and a numpyro imported
# that way loses its submodule attributes, which breaks az.from_numpyro
# ("module 'numpyro.infer' has no attribute 'initialization'").
import numpyro.infer  # noqa: F401

from numpyro_transport.config import TransportConfig
from numpyro_transport.engine import TransportResult, transport
from numpyro_transport.kernel import AST, ASTState
from numpyro_transport.reference import Reference
from numpyro_transport.weights import combine_evidence

__version__ = "0.1.0"

#: Names loaded on first use, and the modules that hold them (ArviZ, xarray, pandas).
_LAZY = {
    "log_evidence": "numpyro_transport.inference_data",
    "log_evidence_interval": "numpyro_transport.inference_data",
    "to_arviz": "numpyro_transport.inference_data",
    "compare_samplers": "numpyro_transport.comparison",
    "compare": "numpyro_transport.comparison",  # deprecated alias of compare_samplers
    "Comparison": "numpyro_transport.comparison",
    "compare_models": "numpyro_transport.model_comparison",
    "ModelComparison": "numpyro_transport.model_comparison",
}

__all__ = [
    "AST",
    "ASTState",
    "Comparison",
    "ModelComparison",
    "Reference",
    "TransportConfig",
    "TransportResult",
    "combine_evidence",
    "compare",
    "compare_models",
    "compare_samplers",
    "log_evidence",
    "log_evidence_interval",
    "to_arviz",
    "transport",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'numpyro_transport' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
