"""numpyro_transport: annealed stochastic transport, an exact particle sampler with evidence."""

# NumPyro before ArviZ: arviz-base loads numpyro lazily (lazy_loader), and a numpyro imported
# that way loses its submodule attributes, which breaks az.from_numpyro
# ("module 'numpyro.infer' has no attribute 'initialization'").
import numpyro.infer  # noqa: F401

from numpyro_transport import blackjax, plots, targets
from numpyro_transport.compare import Comparison, compare
from numpyro_transport.config import TransportConfig
from numpyro_transport.engine import TransportResult, combine_evidence, transport
from numpyro_transport.inference_data import log_evidence, to_arviz
from numpyro_transport.kernel import AST, ASTState
from numpyro_transport.reference import Reference
from numpyro_transport.sweep import (
    Schedule,
    StepInfo,
    SweepRecord,
    SweepResult,
    TransportState,
    sweep,
)

__version__ = "0.1.0"

__all__ = [
    "AST",
    "ASTState",
    "SweepRecord",
    "Reference",
    "Schedule",
    "StepInfo",
    "SweepResult",
    "TransportConfig",
    "TransportResult",
    "TransportState",
    "combine_evidence",
    "compare",
    "Comparison",
    "sweep",
    "blackjax",
    "plots",
    "targets",
    "transport",
    "log_evidence",
    "to_arviz",
]
