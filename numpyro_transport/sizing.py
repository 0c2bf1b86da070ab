"""The number of particles of the PIMH kernel, chosen from a pilot run.

An [`AST`][numpyro_transport.AST] sampling iteration is a particle independent
Metropolis–Hastings step that accepts with probability min(1, Ẑ*/Ẑ), so its mixing is set by
σ = sd(log Ẑ) of one sweep, and its cost by N. For a fixed grid σ² ≈ c/N. With a Gaussian log Ẑ
the integrated autocorrelation time of the chain is 2·E[1/a(W)] − 1 (a the acceptance
probability given the current noise W), and effective draws per evaluation, ∝ σ²/IACT, peak near
σ = 0.9 (computed for this independence sampler; cf. σ ≈ 0.92 for particle marginal MH, Pitt et
al. 2012). Small-N log Ẑ has a heavier right tail than the
Gaussian (chains stick at a healthy-looking acceptance rate; docs/benchmarks.md, "PIMH cost
against the number of particles"), so the rule aims lower:

    N = N₀ · (σ̂₀ / σ*)²,  σ* = 0.6 (IACT ≈ 2.4, 80 % of the Gaussian optimum),

where σ̂₀ is the spread of log Ẑ over the frozen sweeps of a pilot run of the driver
([`numpyro_transport.driver.run`][numpyro_transport.driver.run]) with N₀ particles and the kernel's
options and warm-up (refits, tempering, frozen grid). N is rounded up to a power of two and kept in
[``MIN_PARTICLES``, ``MAX_PARTICLES``]. The first pilot runs at the smallest N, so that the rule
extrapolates upwards, where it is conservative (more particles also fit a better reference in
warm-up, so σ falls faster than 1/√N); a pilot that asks for more than ``GROWTH``·N₀ is
repeated with ``GROWTH``·N₀ particles. The inner size M and the step ε need no pilot: M adapts
to the measured inner ESS at every step, and every step is CESS-guarded.
"""

import math
import warnings
from dataclasses import replace
from typing import NamedTuple

import jax
import numpy as np

from numpyro_transport import driver
from numpyro_transport.config import TransportConfig
from numpyro_transport.reference import Reference

__all__ = ["Sizing", "particles_for", "choose_num_particles", "audit"]

#: σ*, the target spread of log Ẑ per sweep.
TARGET_SD = 0.6
#: Bounds on the chosen N: below 32 log Ẑ is too heavy-tailed for the rule; above 2048 a sweep
#: is better used on its own ([`transport`][numpyro_transport.transport]).
MIN_PARTICLES = 32
MAX_PARTICLES = 2048
#: Frozen sweeps per pilot run.
PILOT_SWEEPS = 16
#: Largest factor between a pilot's N and the N it may choose; beyond it, another pilot runs.
GROWTH = 4
#: [`audit`][numpyro_transport.sizing.audit] flags a chain that expected fewer than one
#: acceptance over this many times the mean wait 1/a of a healthy chain (and ≥ ``STUCK_MIN``).
STUCK_FACTOR = 10
STUCK_MIN = 10


class Sizing(NamedTuple):
    """The particle number [`choose_num_particles`][numpyro_transport.sizing.choose_num_particles]
    chose, and its evidence.

    Attributes:
        num_particles: the chosen N.
        pilot_log_evidence_sd: σ̂₀, the spread of log Ẑ over the last pilot's frozen sweeps.
        pilot_particles: N₀ of the last pilot.
        predicted_sd: σ̂₀·√(N₀/N), the spread expected at the chosen N.
        num_evaluations: log-density evaluations of the pilot runs.
    """

    num_particles: int
    pilot_log_evidence_sd: float
    pilot_particles: int
    predicted_sd: float
    num_evaluations: int


def particles_for(pilot_sd: float, pilot_particles: int) -> int:
    """N = N₀ (σ̂₀/σ*)², rounded up to a power of two, in [``MIN_PARTICLES``, ``MAX_PARTICLES``].

    Args:
        pilot_sd: σ̂₀, the spread of log Ẑ over the pilot's frozen sweeps (finite: a pilot
            sweep with Ẑ = 0 stops the pilot with an error).
        pilot_particles: N₀, the pilot's number of particles.

    Returns:
        The number of particles N.
    """
    needed = pilot_particles * (pilot_sd / TARGET_SD) ** 2
    power = 2 ** math.ceil(math.log2(max(needed, 1.0)))
    return int(min(max(power, MIN_PARTICLES), MAX_PARTICLES))


def _pilot(
    rng_key, logdensity_fn, reference, config, tempering_ess, num_particles, warmup, progress
):
    """σ̂ of log Ẑ over ``PILOT_SWEEPS`` frozen sweeps of N particles after ``warmup`` warm-up
    sweeps (the kernel's warm-up), and the evaluations spent."""
    try:
        run = driver.run(
            rng_key,
            logdensity_fn,
            reference,
            replace(config, num_particles=num_particles),
            num_warmup=warmup,
            num_sweeps=PILOT_SWEEPS,
            tempering_ess=tempering_ess,
            progress=progress,
            label=f"AST pilot, N = {num_particles}",
        )
    except FloatingPointError as error:
        raise FloatingPointError(
            f"num_particles='auto': the pilot run with {num_particles} particles failed. "
            f"{error} An integer num_particles skips the pilot."
        ) from error
    sd = float(np.std(np.asarray(run.sweeps.result.log_evidence, np.float64), ddof=1))
    return sd, run.num_evaluations


def choose_num_particles(
    rng_key,
    logdensity_fn,
    reference: Reference,
    config: TransportConfig,
    tempering_ess: float,
    num_warmup: int,
    progress: bool = False,
) -> Sizing:
    """Pilot runs of the driver and [`particles_for`][numpyro_transport.sizing.particles_for].

    Each pilot has ``PILOT_SWEEPS`` frozen sweeps, the other options of ``config`` and the
    kernel's ``num_warmup`` warm-up sweeps. The first pilot has ``MIN_PARTICLES``. When the rule
    asks for more than ``GROWTH`` times the pilot's N, the next pilot has ``GROWTH`` times more;
    from ``MAX_PARTICLES / GROWTH`` on the rule's N is taken as it is. Warns when N hits
    ``MAX_PARTICLES``.

    Args:
        rng_key: a JAX PRNG key, folded in with each pilot's N.
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        reference: the first [`Reference`][numpyro_transport.Reference].
        config: the [`TransportConfig`][numpyro_transport.TransportConfig]; its ``num_particles``
            is replaced by each pilot's.
        tempering_ess: ESS fraction below which the warm-up tempers.
        num_warmup: warm-up sweeps of each pilot, as the kernel's.
        progress: show each pilot's sweeps in a progress bar.

    Returns:
        The chosen N and the pilot's evidence for it, as a
        [`Sizing`][numpyro_transport.sizing.Sizing].
    """
    n, spent = MIN_PARTICLES, 0
    while True:
        key = jax.random.fold_in(rng_key, n)
        sd, evaluations = _pilot(
            key, logdensity_fn, reference, config, tempering_ess, n, num_warmup, progress
        )
        spent += evaluations
        wanted = particles_for(sd, n)
        if wanted <= GROWTH * n or GROWTH * n >= MAX_PARTICLES:
            break
        n *= GROWTH
    chosen = max(wanted, n)  # the rule only extrapolates upwards (see the module's text)
    predicted = sd * math.sqrt(n / chosen)
    if chosen == MAX_PARTICLES and not predicted <= TARGET_SD:
        warnings.warn(
            f"num_particles='auto': at N = {n} the pilot's log Ẑ spreads by {sd:.2f}, so PIMH "
            f"would need more than {MAX_PARTICLES} particles to reach sd {TARGET_SD}; it uses "
            f"{MAX_PARTICLES} and its chains may stick. Give a reference closer to the "
            "posterior, reparametrize the model, or run numpyro_transport.transport(), whose "
            "frozen sweeps need no acceptance step.",
            RuntimeWarning,
            stacklevel=3,
        )
    return Sizing(chosen, sd, n, predicted, spent)


def _longest_stuck(accept_prob) -> int:
    """The longest run of consecutive proposals whose acceptance probabilities sum to < 1."""
    longest, start, total = 0, 0, 0.0
    for end, a in enumerate(accept_prob):
        total += a
        while total >= 1 and start <= end:
            total -= accept_prob[start]
            start += 1
        longest = max(longest, end - start + 1)
    return longest


def audit(log_evidence, accept_prob, num_particles: int, sizing: Sizing | None) -> list[str]:
    """What a run's proposed sweeps say of its N, as warnings to show (an empty list if none).

    Two checks, after a run of [`AST`][numpyro_transport.AST]:

    - **the spread of log Ẑ*** pooled over the chains' proposed sweeps against the pilot's
      prediction σ̂₀·√(N₀/N) (``num_particles="auto"`` only): flagged when their variance ratio
      exceeds the 99.5 % point of its F distribution, the bound of the pilot's own test;
    - **a stuck stretch**: with σ the measured spread, a healthy chain accepts a proposal with
      probability a = 2Φ(−σ/√2) (log Ẑ Gaussian), waiting 1/a proposals on average. A chain
      flagged here had a run of at least max(``STUCK_MIN``, ``STUCK_FACTOR``/a) consecutive
      proposals whose acceptance probabilities sum to less than one: it sat on a lucky Ẑ.

    Each message gives the measured numbers and the N of
    [`particles_for`][numpyro_transport.sizing.particles_for] at the measured spread.

    Args:
        log_evidence: per chain, the ``(k_c,)`` log Ẑ* of its proposed sampling sweeps.
        accept_prob: per chain, the ``(k_c,)`` acceptance probabilities of those proposals.
        num_particles: N of the run.
        sizing: the pilot's [`Sizing`][numpyro_transport.sizing.Sizing], or ``None`` for a
            user-given N.

    Returns:
        The warning messages.
    """
    from scipy import stats  # noqa: PLC0415 (scipy.stats on demand: import time)

    chains = [np.asarray(z, np.float64) for z in log_evidence if np.size(z) >= 2]
    dof = sum(z.size - 1 for z in chains)
    if dof < 2:
        return []
    variance = sum(np.sum((z - z.mean()) ** 2) for z in chains) / dof
    sd = math.sqrt(variance)
    if not math.isfinite(sd):
        return []
    better = particles_for(sd, num_particles)
    messages = []
    if sizing is not None and sizing.predicted_sd > 0:
        ratio = variance / sizing.predicted_sd**2
        if ratio > stats.f.ppf(0.995, dof, PILOT_SWEEPS - 1):
            messages.append(
                f"The sampling sweeps' log Ẑ spread by {sd:.2f} over {dof + len(chains)} "
                f"proposals, beyond the {sizing.predicted_sd:.2f} that the num_particles='auto' "
                f"pilot predicted at N = {num_particles} (F-test, 99.5 %): the chains mix worse "
                f"than planned. Use AST(..., num_particles={max(better, 2 * num_particles)})."
            )
    rate = 2 * stats.norm.cdf(-sd / math.sqrt(2))
    limit = max(STUCK_MIN, STUCK_FACTOR / rate)
    for c, probabilities in enumerate(accept_prob):
        stuck = _longest_stuck(np.asarray(probabilities, np.float64))
        if stuck >= limit:
            messages.append(
                f"Chain {c} expected less than one acceptance over {stuck} consecutive proposed "
                f"sweeps, where a healthy chain at the measured sd {sd:.2f} of log Ẑ accepts "
                f"{rate:.2f} of them: it sat on a lucky Ẑ, repeating one sweep's particles. "
                f"Use AST(..., num_particles={max(better, 2 * num_particles)})."
            )
    return messages
