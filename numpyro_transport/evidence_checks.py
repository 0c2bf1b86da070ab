"""Signs that an evidence estimate is suspect, from what a run measured, as warnings and numbers.

log Ẑ's standard error is the Monte Carlo error given the regions the sweeps found: a mode that
no sweep visits is in neither log Ẑ nor its error bar, and no check on the run can see it. A
mode that some sweeps find and others miss does show, and so do the conditions under which the
error bar itself is unreliable. [`check_evidence`][numpyro_transport.evidence_checks.check_evidence]
runs four checks:

- **a sweep that disagrees with the others** (fewer than ``MIN_SWEEPS_PARETO`` sweeps, as
  ``transport()``'s few frozen sweeps): each sweep's log Ẑ_r against the mean and spread of the
  other R − 1 (leave-one-out: (x_r − x̄₋ᵣ)/(s₋ᵣ·√(1 + 1/(R − 1))) is Student-t with R − 2
  degrees of freedom when log Ẑ is Gaussian), for the highest and the lowest sweep,
  Bonferroni-corrected over the R sweeps; flagged below ``ALPHA``. A high outlier is a sweep that
  found mass the others missed (or a rare heavy-tailed Ẑ that dominates the mean), a low one a
  sweep that missed what the others found;
- **a heavy right tail of Ẑ** (at least ``MIN_SWEEPS_PARETO`` sweeps, as the proposed sweeps of
  ``MCMC(AST)``): the Pareto k̂ of the Ẑ_r as importance weights (``arviz_stats``'s
  ``pareto_khat``, right tail); above ``PARETO_K`` the mean of the Ẑ_r is dominated by a few
  sweeps and its standard error is unreliable (Vehtari et al. 2024). With that many sweeps, a
  Gaussian outlier test would flag the small-N right tail that PIMH is sized for (σ = sd log Ẑ
  ≈ 0.6); k̂ measures whether that tail spoils the mean;
- **the inner estimate collapsing**: the median inner ESS of the particles' drift estimates
  below ``INNER_ESS_FLOOR`` at some step of the recorded sweeps where the inner size had grown
  to its cap (``num_inner·max_inner_blocks``, at least 4·``INNER_ESS_FLOOR``): the adaptation
  of M ran out, the drift rests on about one inner draw and the transport degrades to
  importance sampling there. (Below the cap a low inner ESS is measured and answered by a
  larger M at the next step, as on a broad reference's first step; with a smaller cap it is the
  user's choice of ``num_inner``.);
- **chains that disagree** (MCMC): each chain's log Ẑ_c against the pooled one,
  Σ_c ((log Ẑ_c − log Ẑ)/se_c)² against χ² with C − 1 degrees of freedom; flagged below
  ``ALPHA``.
"""

import math
from typing import NamedTuple

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from numpyro_transport.records import SweepRecord
from numpyro_transport.weights import combine_evidence

__all__ = [
    "EvidenceChecks",
    "check_evidence",
    "sweep_outlier",
    "chain_agreement",
    "independent_estimates",
]

#: Family-wise false-alarm rate of the outlier and chain tests when log Ẑ is Gaussian.
ALPHA = 1e-3
#: Pareto k̂ above which a mean of the Ẑ_r is unreliable.
PARETO_K = 0.7
#: Fewest sweeps for which k̂ is estimated (its tail fit needs at least 5 of them).
MIN_SWEEPS_PARETO = 32
#: Median inner ESS below which a step's drift estimate counts as collapsed.
INNER_ESS_FLOOR = 2.0


class EvidenceChecks(NamedTuple):
    """What [`check_evidence`][numpyro_transport.evidence_checks.check_evidence] measured.

    Attributes:
        outlier_sweep: the index of the sweep whose log Ẑ_r is furthest from the others
            (−1 with fewer than 3 sweeps, or from ``MIN_SWEEPS_PARETO`` on).
        outlier_p: its Bonferroni-corrected p-value (1 when not tested); the sweeps disagree
            below ``ALPHA``.
        pareto_k: Pareto k̂ of the Ẑ_r (NaN with fewer than ``MIN_SWEEPS_PARETO`` sweeps).
        inner_ess_min: the smallest median inner ESS over the checked steps of the recorded
            sweeps (NaN when none).
        chains_p: p-value of the chains' agreement on log Z (NaN without two chains of at least
            two sweeps each).
        warnings: the warning messages, one per failed check.
    """

    outlier_sweep: int
    outlier_p: float
    pareto_k: float
    inner_ess_min: float
    chains_p: float
    warnings: tuple[str, ...]

    def attrs(self) -> dict:
        """The checks as attributes of ArviZ's ``transport`` group (``evidence_…``).

        Returns:
            ``{name: value}``, JSON-friendly.
        """
        return {
            "evidence_outlier_sweep": self.outlier_sweep,
            "evidence_outlier_p": self.outlier_p,
            "evidence_pareto_k": self.pareto_k,
            "evidence_inner_ess_min": self.inner_ess_min,
            "evidence_chains_p": self.chains_p,
            "evidence_warnings": list(self.warnings),
        }


def sweep_outlier(log_z) -> tuple[int, float]:
    """The sweep furthest from the others, and the Bonferroni p-value of its leave-one-out test.

    Args:
        log_z: the ``(R,)`` log Ẑ_r of independent sweeps.

    Returns:
        ``(r, p)``: the sweep's index and its p-value; ``(-1, 1.0)`` with fewer than 3 sweeps.
    """
    log_z = np.asarray(log_z, np.float64).reshape(-1)
    r = log_z.shape[0]
    if r < 3:
        return -1, 1.0
    best = (-1, 1.0)
    for index in (int(np.argmax(log_z)), int(np.argmin(log_z))):
        others = np.delete(log_z, index)
        gap = abs(log_z[index] - others.mean())
        scale = others.std(ddof=1) * math.sqrt(1 + 1 / (r - 1))
        if gap == 0:
            continue
        t = gap / scale if scale > 0 else math.inf
        p = min(1.0, r * 2 * float(stats.t.sf(t, r - 2)))
        best = min(best, (index, p), key=lambda pair: pair[1])
    return best


def chain_agreement(chain_log_z) -> float:
    """p-value of the hypothesis that the chains estimate the same log Z.

    Args:
        chain_log_z: per chain, the ``(k_c,)`` log Ẑ of its proposed sweeps; chains with fewer
            than 2 are left out.

    Returns:
        The χ² p-value, or NaN with fewer than two usable chains (or a zero standard error).
    """
    estimates = [combine_evidence(z) for z in chain_log_z if np.size(z) >= 2]
    if len(estimates) < 2:
        return math.nan
    centre, se = np.array(estimates).T
    if not np.all(se > 0):
        return math.nan
    weights = 1 / se**2
    pooled = np.sum(weights * centre) / np.sum(weights)
    return float(stats.chi2.sf(np.sum(weights * (centre - pooled) ** 2), len(estimates) - 1))


def independent_estimates(chain_log_z, chains_p: float) -> np.ndarray:
    """log Ẑ of the independent unbiased estimates of Z that an MCMC run's error bar rests on.

    While the chains agree (``chains_p`` ≥ ``ALPHA``, or NaN), every proposed sweep of every
    chain, pooled. When they disagree, each chain's mean Ẑ*, so that the standard error comes
    from the spread of the chains' means, with C − 1 degrees of freedom. Each chain freezes
    its own warm-up's configuration (reference, grid, step sizes) and its Ẑ* are unbiased given
    it, but their spread is not the same in every chain: a chain whose configuration lost a
    mode proposes sweeps that are low but for rare ones far above. On the quick start's two
    modes at N = 32, 5 % of the chains sit at log 0.7 (the mode of weight 0.3 lost), and 4
    pooled chains' t interval covered log Z in 67–76 % of runs; with this rule, 95–97 %
    (docs/benchmarks.md, "Evidence intervals"). The log Ẑ of the pooled mean is the same either
    way when the chains proposed equally many sweeps.

    Args:
        chain_log_z: per chain, the ``(k_c,)`` log Ẑ* of its proposed sweeps.
        chains_p: [`chain_agreement`][numpyro_transport.evidence_checks.chain_agreement]'s
            p-value for these chains.

    Returns:
        The ``(R,)`` log Ẑ to combine with
        [`combine_evidence`][numpyro_transport.weights.combine_evidence] and
        [`evidence_interval`][numpyro_transport.weights.evidence_interval].
    """
    chains = [np.asarray(z, np.float64).reshape(-1) for z in chain_log_z]
    if chains_p < ALPHA:
        return np.array([logsumexp(z) - math.log(z.size) for z in chains if z.size])
    return np.concatenate(chains)


def _pareto_k(log_z) -> float:
    """Pareto k̂ of the right tail of Ẑ_r (independent sweeps: relative efficiency 1)."""
    from arviz_stats.base import array_stats  # noqa: PLC0415 (ArviZ on demand: import time)

    z = np.exp(log_z - log_z.max())
    return float(array_stats.pareto_khat(z, chain_axis=None, r_eff=1.0, tail="right"))


def _inner_ess_min(record: SweepRecord, max_inner: int) -> float:
    """The smallest median inner ESS over the steps of ``record``'s filled slots whose inner
    size reached ``max_inner`` (if that is at least 4·``INNER_ESS_FLOOR``); NaN if none."""
    steps = record.steps
    num_steps = np.asarray(record.num_steps)
    taken = np.arange(np.shape(steps.lam)[-1]) < num_steps[..., None]
    checked = taken & (np.asarray(record.iteration) >= 0)[..., None]
    checked &= np.asarray(steps.num_inner) >= max(max_inner, 4 * INNER_ESS_FLOOR)
    if not checked.any():
        return math.nan
    return float(np.min(np.asarray(steps.inner_ess_median)[checked]))


def check_evidence(
    log_z, record: SweepRecord | None = None, max_inner: int = 0, chain_log_z=None
) -> EvidenceChecks:
    """Run the checks of this module on a run's sweeps.

    Args:
        log_z: the ``(R,)`` log Ẑ_r of the independent (frozen or proposed) sweeps.
        record: the [`SweepRecord`][numpyro_transport.records.SweepRecord] of recorded sampling
            sweeps (any leading dims), for the inner ESS check, or ``None``.
        max_inner: the cap of the inner size, ``num_inner·max_inner_blocks`` of the run's
            [`TransportConfig`][numpyro_transport.TransportConfig].
        chain_log_z: per chain, the log Ẑ of its sweeps (an MCMC run), or ``None``.

    Returns:
        The [`EvidenceChecks`][numpyro_transport.evidence_checks.EvidenceChecks], with a message
        for each failed check that says what to do.
    """
    log_z = np.asarray(log_z, np.float64).reshape(-1)
    messages = []
    few = log_z.size < MIN_SWEEPS_PARETO
    sweep, p = sweep_outlier(log_z) if few else (-1, 1.0)
    if p < ALPHA:
        others = np.delete(log_z, sweep)
        side = "above" if log_z[sweep] > others.mean() else "below"
        messages.append(
            f"Sweep {sweep}'s log Ẑ = {log_z[sweep]:.3f} lies far {side} the other "
            f"{others.size} sweeps' ({others.mean():.3f} ± sd {others.std(ddof=1):.3f}; "
            f"outlier test p = {p:.1e}): the sweeps found different regions, or Ẑ has a heavy "
            "right tail at this number of particles; either way log Ẑ and its error bar rest on "
            "a few sweeps. Raise num_particles (or num_warmup, to fit the reference on all the "
            "modes) until the sweeps agree."
        )
    pareto_k = math.nan if few else _pareto_k(log_z)
    if pareto_k > PARETO_K:
        messages.append(
            f"The sweeps' Ẑ have a heavy right tail (Pareto k̂ = {pareto_k:.2f} > {PARETO_K}): "
            "a few sweeps dominate the evidence, and its standard error is unreliable. Raise "
            "num_particles."
        )
    inner = math.nan if record is None else _inner_ess_min(record, max_inner)
    if inner < INNER_ESS_FLOOR:
        messages.append(
            f"The drift estimates collapsed at some step of the sweeps (median inner ESS "
            f"{inner:.2f} < {INNER_ESS_FLOOR} with the inner size at its cap of {max_inner}): "
            "the transport degrades to importance sampling there and Ẑ's spread grows. Raise "
            "max_inner_blocks or num_inner."
        )
    chains_p = math.nan if chain_log_z is None else chain_agreement(chain_log_z)
    if chains_p < ALPHA:
        per_chain = ", ".join(
            f"{combine_evidence(z)[0]:.3f}" for z in chain_log_z if np.size(z) >= 2
        )
        messages.append(
            f"The chains' log Ẑ disagree beyond their standard errors ({per_chain}; χ² test "
            f"p = {chains_p:.1e}): they found different regions, or Ẑ* has a heavy right tail at "
            "this number of particles and the sweeps' spread understates the error; "
            "log_evidence's standard error and interval come from the chains' means (C − 1 "
            "degrees of freedom) instead. Raise num_particles (and num_warmup), and compare the "
            "chains' draws."
        )
    return EvidenceChecks(sweep, p, pareto_k, inner, chains_p, tuple(messages))
