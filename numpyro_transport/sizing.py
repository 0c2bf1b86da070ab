"""The number of particles of the PIMH kernel, chosen from a pilot run.

An :class:`~numpyro_transport.AST` sampling iteration is a particle independent
Metropolis–Hastings step that accepts with probability min(1, Ẑ*/Ẑ), so its mixing is set by
σ = sd(log Ẑ) of one sweep, and its cost by N. For a fixed grid σ² ≈ c/N. With a Gaussian log Ẑ
the integrated autocorrelation time of the chain is 2·E[1/a(W)] − 1 (a the acceptance
probability given the current noise W), and effective draws per evaluation, ∝ σ²/IACT, peak near
σ = 0.9 (Pitt et al. 2012; Doucet et al. 2015). Small-N log Ẑ has a heavier right tail than the
Gaussian (chains stick at a healthy-looking acceptance rate; docs/benchmarks.md, "PIMH cost
against the number of particles"), so the rule aims lower:

    N = N₀ · (σ̂₀ / σ*)²,  σ* = 0.6 (IACT ≈ 2.4, 80 % of the Gaussian optimum),

where σ̂₀ is the spread of log Ẑ over the frozen sweeps of a pilot
:func:`~numpyro_transport.transport` run with N₀ particles (the same warm-up as the kernel's:
refits, tempering, frozen grid). N is rounded up to a power of two and kept in
[``MIN_PARTICLES``, ``MAX_PARTICLES``]. The inner size M and the step ε need no pilot: M adapts
to the measured inner ESS at every step, and every step is CESS-guarded.
"""

import math
import warnings
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from numpyro_transport.config import TransportConfig
from numpyro_transport.engine import transport
from numpyro_transport.reference import Reference

__all__ = ["Sizing", "particles_for", "choose_num_particles"]

#: σ*, the target spread of log Ẑ per sweep.
TARGET_SD = 0.6
#: Bounds on the chosen N: below 32 log Ẑ is too heavy-tailed for the rule; above 2048 a sweep
#: is better used on its own (:func:`~numpyro_transport.transport`).
MIN_PARTICLES = 32
MAX_PARTICLES = 2048
#: N₀ and the frozen sweeps of the pilot run. The pilot runs at the smallest N so that the rule
#: only extrapolates upwards, where it is conservative: fewer particles also fit a worse
#: reference in warm-up, so σ grows faster than 1/√N below N₀.
PILOT_PARTICLES = MIN_PARTICLES
PILOT_SWEEPS = 16


class Sizing(NamedTuple):
    """The particle number :func:`choose_num_particles` chose, and its evidence.

    - **num_particles** - the chosen N.
    - **pilot_log_evidence_sd** - σ̂₀, the spread of log Ẑ over the pilot's frozen sweeps.
    - **pilot_particles** - N₀ of the pilot.
    - **predicted_sd** - σ̂₀·√(N₀/N), the spread expected at the chosen N.
    - **num_evaluations** - log-density evaluations of the pilot run.
    """

    num_particles: int
    pilot_log_evidence_sd: float
    pilot_particles: int
    predicted_sd: float
    num_evaluations: int


def particles_for(pilot_sd: float, pilot_particles: int) -> int:
    """N = N₀ (σ̂₀/σ*)², rounded up to a power of two, in [``MIN_PARTICLES``, ``MAX_PARTICLES``];
    a non-finite σ̂₀ (a sweep with Ẑ = 0) gives ``MAX_PARTICLES``."""
    if not np.isfinite(pilot_sd):
        return MAX_PARTICLES
    needed = pilot_particles * (pilot_sd / TARGET_SD) ** 2
    power = 2 ** math.ceil(math.log2(max(needed, 1.0)))
    return int(min(max(power, MIN_PARTICLES), MAX_PARTICLES))


def choose_num_particles(
    rng_key, logdensity_fn, reference: Reference, config: TransportConfig, tempering_ess: float
) -> Sizing:
    """Run the pilot (N₀ particles, ``PILOT_SWEEPS`` frozen sweeps, the other options of
    ``config``) and apply :func:`particles_for`. Warns when N hits ``MAX_PARTICLES``."""
    pilot = replace(config, num_particles=PILOT_PARTICLES)
    options = {k: getattr(pilot, k) for k in pilot.__dataclass_fields__}
    result = transport(
        logdensity_fn,
        rng_key,
        reference=reference,
        num_sweeps=PILOT_SWEEPS,
        tempering_ess=tempering_ess,
        progress=False,
        **options,
    )
    sd = float(np.std(result.sweep_log_evidence, ddof=1))
    n = particles_for(sd, PILOT_PARTICLES)
    predicted = sd * math.sqrt(PILOT_PARTICLES / n)
    if n == MAX_PARTICLES and not predicted <= TARGET_SD:
        warnings.warn(
            f"num_particles='auto': the pilot's log Ẑ spreads by {sd:.2f} at "
            f"N = {PILOT_PARTICLES}, so PIMH would need more than {MAX_PARTICLES} particles to "
            f"reach sd {TARGET_SD}; it uses {MAX_PARTICLES} and its chains may stick. Give a "
            "reference closer to the posterior, reparametrize the model, or run "
            "numpyro_transport.transport(), whose frozen sweeps need no acceptance step.",
            RuntimeWarning,
            stacklevel=3,
        )
    evaluations = int(result.diagnostics["num_evaluations"])
    return Sizing(n, sd, PILOT_PARTICLES, predicted, evaluations)
