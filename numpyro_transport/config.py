"""Options of the transport sweep, validated once."""

import math
from dataclasses import dataclass, fields

from numpyro_transport.validation import boolean, integer, known_options, real

__all__ = ["TransportConfig", "MOVES"]

MOVES = ("euler", "covariance", "posterior")


@dataclass(frozen=True)
class TransportConfig:
    """Options of an annealed stochastic transport sweep (hashable, so usable as a jit static).

    Attributes:
        num_particles: N, the particle population (≥ 2).
        num_inner: M, inner draws per particle and block; even (antithetic pairs).
        max_inner_blocks: the inner size adapts per step as ``b·M`` with ``1 ≤ b ≤`` this.
        target_inner_ess: grow the inner size while the median inner ESS is below this.
        inner_correlation: ρ of the Crank–Nicolson refresh of each particle's inner noise
            between steps, in [0, 1]; near 1 cancels most inner Monte Carlo noise in the weights.
        move: ``"covariance"`` (Reeves–Pfister V2, default), ``"euler"`` (V1) or
            ``"posterior"`` (V3).
        pool_neighbours: k: each particle's drift pools the inner draws of its k nearest
            particles, itself included (I3); 1 uses its own draws only. The drift only feeds the
            proposal, so exactness is kept whatever k.
        shrinkage: pseudo-count κ of the Gaussian-fit posterior in the drift estimate: with e
            effective inner draws the drift is (e·m̂ + κ·y/(1+λ))/(e+κ) (≥ 0; 0 disables).
        gradient_control_variate: gate the drift with ∇log γ (zero variance on Gaussians;
            costs gradients).
        max_lambda: Λ, the largest SNR of the path (> 0).
        epsilon: ε, nats of information gained per step (I-MMSE rule δ = 2ε/M̂, > 0).
        final_inner_ess: stop before Λ once the mean inner ESS fraction reaches this: the
            last conditional is then close to the Gaussian proposal.
        resample_threshold: κ: resample when ESS < κN.
        cess_threshold: c_min: halve δ and retry while CESS < c_min.
        max_retries: CESS retries per step.
        max_steps: length of the preallocated per-step diagnostics.
        pool_batch: particles per chunk in the pooled estimator (memory knob).
    """

    num_particles: int = 512
    num_inner: int = 16
    max_inner_blocks: int = 4
    target_inner_ess: float = 8.0
    inner_correlation: float = 0.95
    move: str = "covariance"
    pool_neighbours: int = 16
    shrinkage: float = 4.0
    gradient_control_variate: bool = False
    max_lambda: float = 1000.0
    epsilon: float = 1.0
    final_inner_ess: float = 0.9
    resample_threshold: float = 0.5
    cess_threshold: float = 0.5
    max_retries: int = 2
    max_steps: int = 512
    pool_batch: int = 64

    def __post_init__(self):
        ints = dict(
            num_particles=2,
            num_inner=2,
            max_inner_blocks=1,
            pool_neighbours=1,
            max_retries=0,
            max_steps=1,
            pool_batch=1,
        )
        for name, minimum in ints.items():
            object.__setattr__(self, name, integer(name, getattr(self, name), minimum))
        reals = dict(  # (low, high, open_low, open_high)
            target_inner_ess=(0, math.inf, True, False),
            inner_correlation=(0, 1, False, False),
            shrinkage=(0, math.inf, False, False),
            max_lambda=(0, math.inf, True, False),
            epsilon=(0, math.inf, True, False),
            final_inner_ess=(0, 1, True, False),
            resample_threshold=(0, 1, False, False),
            cess_threshold=(0, 1, False, True),
        )
        for name, (low, high, open_low, open_high) in reals.items():
            value = real(
                name, getattr(self, name), low, high, open_low=open_low, open_high=open_high
            )
            object.__setattr__(self, name, value)
        if self.num_inner % 2:
            raise ValueError(
                f"num_inner={self.num_inner!r} must be even (inner draws come in antithetic "
                f"pairs): pass num_inner={self.num_inner + 1}."
            )
        if self.move not in MOVES:
            raise ValueError(f"move={self.move!r} must be one of {MOVES}.")
        grad = boolean("gradient_control_variate", self.gradient_control_variate)
        object.__setattr__(self, "gradient_control_variate", grad)

    @classmethod
    def from_options(cls, where: str, **options) -> "TransportConfig":
        """The config of a front-end's keyword options, naming any unknown one.

        Args:
            where: the front-end that received the options, for the error.
            **options: [`TransportConfig`][numpyro_transport.TransportConfig] fields.

        Returns:
            The validated config.
        """
        known_options(options, [f.name for f in fields(cls)], where)
        return cls(**options)

    @property
    def neighbours(self) -> int:
        """Particles pooled per drift estimate, ``min(pool_neighbours, num_particles)``."""
        return min(self.pool_neighbours, self.num_particles)

    @property
    def max_inner(self) -> int:
        """Largest inner size, ``num_inner · max_inner_blocks``."""
        return self.num_inner * self.max_inner_blocks
