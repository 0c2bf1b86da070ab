"""Multimodal targets with known mode weights and log Z = 0."""

import functools
import warnings

import jax
import numpy as np
import pytest

from numpyro_transport import targets, transport

NUM_SWEEPS = 8


@functools.cache
def _run(dim, num_sweeps=NUM_SWEEPS, seed=0):
    target = targets.two_mode(dim=dim, weights=(0.3, 0.7))
    with warnings.catch_warnings():
        # At N = 256 Ẑ has a heavy right tail on this target: the evidence check flags a rare
        # high sweep on some keys (d = 1, key 0: one sweep of 8 at log Ẑ = +0.43, the others
        # within ±0.09), which these tests of the estimates themselves do not assert on.
        warnings.filterwarnings("ignore", "Sweep .* lies far", RuntimeWarning)
        result = transport(
            jax.random.key(seed),
            logdensity_fn=target.logdensity_fn,
            reference=(np.zeros(dim), 4.0 * np.eye(dim)),
            num_particles=256,
            num_sweeps=num_sweeps,
            progress=False,
        )
    return target, result


def _right_mode_weight(target, particles, log_weights):
    """Weight of the particles nearer to the second (0.7) mode."""
    d = np.linalg.norm(particles[:, None, :] - np.asarray(target.mode_means)[None], axis=-1)
    return np.sum(np.exp(log_weights) * (np.argmin(d, axis=1) == 1))


@pytest.mark.parametrize("dim", [1, 8])
def test_mode_weights(dim):
    """Each frozen sweep gives an independent estimate of the 0.7 mode's weight; their mean is
    within 4 standard errors (sd over the 8 sweeps / √8, floored at 0.01) of 0.7 (seed 0)."""
    target, result = _run(dim)
    n = result.particles.shape[0] // NUM_SWEEPS
    per_sweep = []
    for r in range(NUM_SWEEPS):
        sl = slice(r * n, (r + 1) * n)
        lw = result.log_weights[sl] - np.logaddexp.reduce(result.log_weights[sl])
        per_sweep.append(_right_mode_weight(target, result.particles[sl], lw))
    per_sweep = np.array(per_sweep)
    se = max(per_sweep.std(ddof=1) / np.sqrt(NUM_SWEEPS), 0.01)
    assert abs(per_sweep.mean() - 0.7) < 4 * se, per_sweep
    assert abs(np.mean(result.samples @ np.ones(dim) > 0) - 0.7) < 0.05


@pytest.mark.parametrize("dim", [1, 8])
def test_log_evidence(dim):
    """log Ẑ within 3 standard errors of 0 (se floored at 0.01)."""
    _, result = _run(dim)
    assert abs(result.log_evidence) < 3 * max(result.log_evidence_se, 0.01)


def _unbiased_check(dim, num_sweeps):
    """Frozen sweeps give Ẑ_r with E[Ẑ_r] = Z = 1: mean within 3 standard errors of 1, and the
    mean of log Ẑ_r at or below 0 within noise (Jensen)."""
    _, result = _run(dim, num_sweeps=num_sweeps, seed=1)
    z = np.exp(result.sweep_log_evidence)
    assert abs(z.mean() - 1) < 3 * z.std(ddof=1) / np.sqrt(num_sweeps) + 0.005
    assert result.sweep_log_evidence.mean() < 3 * result.sweep_log_evidence.std() / np.sqrt(
        num_sweeps
    )


def test_evidence_unbiased_1d():
    _unbiased_check(1, 20)


@pytest.mark.slow
def test_evidence_unbiased_8d():
    _unbiased_check(8, 40)


def test_gmm40_finds_modes():
    """FAB's 40-mode mixture from N(0, 25² I): ≥ 38 modes hold a sample and log Ẑ is within
    0.2 of 0 (seed 0). Over seeds 0–5 log Ẑ measured −0.16 … +0.02 (reported se 0.01–0.09;
    before the reference's per-coordinate jitter −0.08 … +0.62): sweeps that under-fill a few
    of the 40 modes make it heavy-tailed, so the gate is on its spread, not on the se; a
    missing constant (log-determinant, log N) moves it by more than 1."""
    target = targets.gmm40()
    result = transport(
        jax.random.key(0),
        logdensity_fn=target.logdensity_fn,
        reference=(np.zeros(2), 25.0**2 * np.eye(2)),
        num_particles=512,
        progress=False,
    )
    d = np.linalg.norm(result.samples[:, None] - np.asarray(target.mode_means)[None], axis=-1)
    found = np.sum(np.any(d < 3.0, axis=0))
    assert found >= 38, found
    assert abs(result.log_evidence) < 0.2, (result.log_evidence, result.log_evidence_se)
