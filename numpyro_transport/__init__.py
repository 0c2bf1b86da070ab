"""numpyro_transport: annealed stochastic transport, an exact particle sampler with evidence."""

from numpyro_transport import targets
from numpyro_transport.config import TransportConfig
from numpyro_transport.engine import TransportResult, combine_evidence, transport
from numpyro_transport.reference import Reference
from numpyro_transport.sweep import Schedule, StepInfo, SweepResult, TransportState, sweep

__version__ = "0.1.0"

__all__ = [
    "Reference",
    "Schedule",
    "StepInfo",
    "SweepResult",
    "TransportConfig",
    "TransportResult",
    "TransportState",
    "combine_evidence",
    "sweep",
    "targets",
    "transport",
]
