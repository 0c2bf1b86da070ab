"""Options of the transport sweep, validated once."""

from dataclasses import dataclass

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
        checks = [
            ("num_particles", self.num_particles >= 2, "must be at least 2"),
            (
                "num_inner",
                self.num_inner >= 2 and self.num_inner % 2 == 0,
                "must be a positive even number (draws come in antithetic pairs)",
            ),
            ("max_inner_blocks", self.max_inner_blocks >= 1, "must be at least 1"),
            ("target_inner_ess", self.target_inner_ess > 0, "must be positive"),
            ("inner_correlation", 0 <= self.inner_correlation <= 1, "must be in [0, 1]"),
            ("move", self.move in MOVES, f"must be one of {MOVES}"),
            ("shrinkage", self.shrinkage >= 0, "must be non-negative"),
            ("max_lambda", self.max_lambda > 0, "(Λ) must be positive"),
            ("epsilon", self.epsilon > 0, "(ε) must be positive"),
            ("final_inner_ess", 0 < self.final_inner_ess <= 1, "must be in (0, 1]"),
            ("resample_threshold", 0 <= self.resample_threshold <= 1, "must be in [0, 1]"),
            ("cess_threshold", 0 <= self.cess_threshold < 1, "must be in [0, 1)"),
            ("max_retries", self.max_retries >= 0, "must be non-negative"),
            ("max_steps", self.max_steps >= 1, "must be at least 1"),
            ("pool_neighbours", self.pool_neighbours >= 1, "must be at least 1"),
            ("pool_batch", self.pool_batch >= 1, "must be at least 1"),
        ]
        for name, ok, message in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} {message}.")

    @property
    def neighbours(self) -> int:
        """Particles pooled per drift estimate, ``min(pool_neighbours, num_particles)``."""
        return min(self.pool_neighbours, self.num_particles)

    @property
    def max_inner(self) -> int:
        """Largest inner size, ``num_inner · max_inner_blocks``."""
        return self.num_inner * self.max_inner_blocks
