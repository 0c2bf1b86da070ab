"""The driver under every front-end (the warm-up rule, evaluation counts, the fori-loop warm-up),
the PIMH step and the weight helpers, each against what it must compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from numpyro_transport import driver, pimh, targets, warmup, weights
from numpyro_transport.config import TransportConfig
from numpyro_transport.reference import broad
from numpyro_transport.sweep import SweepResult

CONFIG = TransportConfig(num_particles=32, num_inner=8, max_inner_blocks=1, max_steps=32)
POOL = CONFIG.num_particles * CONFIG.num_inner
#: N((2, −1), diag(0.5², 0.6²)) from the reference N(0, I): importance sampling cannot reach it,
#: so the warm-up starts tempered (β̂ ≈ 0.63 on seed 0's pool), but not so far that it needs the
#: SMC start.
TARGET = targets.gaussian(jnp.array([2.0, -1.0]), jnp.diag(jnp.array([0.25, 0.36])))
TEMPERING_ESS = 0.05


def _start(key):
    return driver.init(key, TARGET.logdensity_fn, broad(2), CONFIG, TEMPERING_ESS)[0]


def _leaves(tree):
    """The leaves of ``tree`` as NumPy arrays (PRNG keys as their key data)."""
    keys = jax.dtypes.prng_key
    return [
        np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, keys) else a)
        for a in jax.tree.leaves(tree)
    ]


def _steps(state, num_warmup, count):
    outputs = []
    for i in range(count):
        key = jax.random.fold_in(jax.random.key(1), i)
        state, output = driver._step(  # transport()'s compiled step
            key, state, TARGET.logdensity_fn, CONFIG, TEMPERING_ESS, num_warmup, jnp.bool_(False)
        )
        outputs.append((state, output))
    return outputs


def test_step_follows_the_warmup_rule_and_counts_what_it_spends():
    """Seed 0/1, three warm-up sweeps then one frozen: the first sweep runs at the state's β̂ < 1;
    the last warm-up sweep at β = 1 refits nothing and fixes the grid; the frozen sweep replays it
    with the reference unchanged. The state counts the pool, every warm-up sweep and its refit
    candidates (``REFIT_LEVELS`` pools), and nothing of a frozen sweep."""
    start = _start(jax.random.key(0))
    beta = float(start.warmup.temperature)
    assert 0 < beta < 1 and not bool(driver.needs_smc_reference(start))
    assert not bool(driver.tempering_finished(start))
    assert int(start.num_evaluations) == POOL
    (s1, o1), (s2, o2), (s3, o3), (s4, o4) = _steps(start, 3, 4)

    assert [bool(o.is_warmup) for o in (o1, o2, o3, o4)] == [True, True, True, False]
    assert float(o1.record.temperature) == pytest.approx(beta)
    assert float(o3.record.temperature) == 1.0 and not bool(o3.record.refit_accepted)
    assert [int(s.iteration) for s in (s1, s2, s3, s4)] == [1, 2, 3, 4]
    # The last warm-up sweep keeps its reference and records its own grid ...
    np.testing.assert_array_equal(s3.warmup.reference.mean, s2.warmup.reference.mean)
    np.testing.assert_array_equal(s3.warmup.schedule.lambdas, o3.result.schedule.lambdas)
    # ... which the frozen sweep replays, changing neither grid nor reference.
    frozen = s3.warmup.schedule
    k = int(frozen.num_steps)
    np.testing.assert_array_equal(o4.result.schedule.lambdas[:k], frozen.lambdas[:k])
    assert int(o4.result.num_steps) == k
    np.testing.assert_array_equal(s4.warmup.reference.mean, s3.warmup.reference.mean)

    refits = warmup.REFIT_LEVELS * POOL
    warm = sum(int(o.result.num_evaluations) + refits for o in (o1, o2, o3))
    assert [int(o.num_evaluations) for o in (o1, o2, o3)] == [
        int(o.result.num_evaluations) + refits for o in (o1, o2, o3)
    ]
    assert int(o4.num_evaluations) == int(o4.result.num_evaluations)
    assert int(s3.num_evaluations) == POOL + warm == int(s4.num_evaluations)


def test_run_and_the_fori_loop_warmup_agree():
    """The host loop of ``transport()`` and the ``lax.fori_loop`` of the BlackJAX API warm up
    identically (same keys, seed 2): same reference, grid and β̂; ``run`` counts the pool, the
    warm-up and the frozen sweeps."""
    key = jax.random.key(2)
    run = driver.run(
        key,
        TARGET.logdensity_fn,
        broad(2),
        CONFIG,
        num_warmup=2,
        num_sweeps=2,
        tempering_ess=TEMPERING_ESS,
    )
    k_pool, _, k_sweeps = jax.random.split(key, 3)
    looped = jax.jit(driver.warmup_loop, static_argnums=(2, 3, 4, 5))(
        k_sweeps, _start(k_pool), TARGET.logdensity_fn, CONFIG, TEMPERING_ESS, 2
    )
    for a, b in zip(_leaves(run.state), _leaves(looped), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert run.warmup.record.iteration.tolist() == [0, 1]
    assert run.sweeps.record.iteration.tolist() == [2, 3]
    frozen = int(np.sum(run.sweeps.result.num_evaluations))
    assert run.num_evaluations == int(run.state.num_evaluations) + frozen


def test_smc_reference_runs_only_where_needed():
    """A state whose β̂ ≥ ``SMC_BELOW`` is returned unchanged (so chains can share the call);
    one far from the target (β̂ < ``SMC_BELOW``) runs the SMC start and counts it (seed 3). Both
    on one target (one compiled SMC run): the near state is the far one with β̂ = 1."""
    far = targets.gaussian(jnp.array([8.0, -6.0]), 0.01 * jnp.eye(2))
    smc = jax.jit(driver.smc_reference, static_argnums=(2, 3, 4))
    key = jax.random.key(3)
    state, _ = driver.init(key, far.logdensity_fn, broad(2), CONFIG, TEMPERING_ESS)
    near = state._replace(warmup=state.warmup._replace(temperature=jnp.ones(())))
    for start, needed in ((state, True), (near, False)):
        assert bool(driver.needs_smc_reference(start)) == needed
        moved = smc(key, start, far.logdensity_fn, CONFIG, TEMPERING_ESS)
        assert bool(moved.smc_ran) == needed
        if needed:
            assert bool(moved.smc_adopted) and int(moved.num_evaluations) > POOL
            assert float(moved.warmup.temperature) > float(start.warmup.temperature)
        else:
            for a, b in zip(_leaves(moved), _leaves(start), strict=True):
                np.testing.assert_array_equal(a, b)


def _sweep_result(log_weights, log_evidence, particles=None):
    """A SweepResult with just what PIMH reads: particles ``(N, 1)`` at their index, log p = 0."""
    n = log_weights.shape[0]
    particles = jnp.arange(n, dtype=float)[:, None] if particles is None else particles
    fields = dict.fromkeys(SweepResult._fields)
    fields.update(
        particles=particles,
        particle_log_density=jnp.zeros(n),
        log_weights=log_weights,
        log_evidence=jnp.asarray(log_evidence),
        num_evaluations=jnp.int32(7),
    )
    return SweepResult(**fields)


def test_pimh_draws_by_weight_and_accepts_with_the_evidence_ratio():
    """Seeds 0–3999: from a chain with log Ẑ = −∞ every proposal is accepted and the particle is
    drawn ∝ its weight (χ² test at 0.1 %; a uniform draw fails it); with log Ẑ = log Ẑ* + log 2 the
    acceptance probability is exactly 1/2 and the acceptance frequency within 4 se of it."""
    w = jnp.array([0.1, 0.2, 0.7, 0.0])
    result = _sweep_result(jnp.log(w), 1.3)
    keys = jax.random.split(jax.random.key(0), 4000)
    empty = pimh.init(jnp.full(1, -5.0), 0.0, 4)
    chains, info = jax.vmap(pimh.propose, (0, None, None))(keys, empty, result)
    assert np.all(info.is_accepted) and np.all(info.acceptance_rate == 1.0)
    counts = np.bincount(np.asarray(chains.index), minlength=4)
    assert counts[3] == 0
    assert stats.chisquare(counts[:3], 4000 * np.asarray(w[:3])).pvalue > 1e-3
    uniform = stats.chisquare(counts[:3], np.full(3, counts[:3].sum() / 3)).pvalue
    assert uniform < 1e-3  # the test can tell a draw that ignores the weights
    np.testing.assert_allclose(chains.system.log_evidence, 1.3, rtol=1e-6)
    np.testing.assert_allclose(info.ess, 1.0 / np.sum(np.asarray(w) ** 2) / 4, rtol=1e-5)

    current = pimh.init(jnp.full(1, -5.0), 0.0, 4, log_evidence=1.3 + np.log(2.0))
    chains, info = jax.vmap(pimh.propose, (0, None, None))(keys, current, result)
    np.testing.assert_allclose(info.acceptance_rate, 0.5, rtol=1e-6)
    rate = float(np.mean(info.is_accepted))
    assert abs(rate - 0.5) < 4 * np.sqrt(0.25 / 4000), rate
    stayed = ~np.asarray(info.is_accepted)
    positions = jax.vmap(lambda c: c.position)(chains)
    np.testing.assert_array_equal(positions[stayed, 0], -5.0)


def test_pimh_refuses_a_non_finite_sweep_or_proposal():
    """A sweep with Ẑ* = 0, or whose drawn particle is NaN, is never accepted, even by a chain
    with log Ẑ = −∞."""
    empty = pimh.init(jnp.zeros(1), 0.0, 2)
    for result in (
        _sweep_result(jnp.log(jnp.full(2, 0.5)), -jnp.inf),
        _sweep_result(jnp.log(jnp.full(2, 0.5)), 0.0, particles=jnp.full((2, 1), jnp.nan)),
    ):
        chain, info = pimh.propose(jax.random.key(0), empty, result)
        assert float(info.acceptance_rate) == 0.0 and not bool(info.is_accepted)
        np.testing.assert_array_equal(chain.position, 0.0)


def test_weight_helpers():
    """ESS, normalization, compensated sums and the evidence combination against their
    definitions, including the edge cases (no finite weight, NaN, +∞)."""
    log_w = jnp.log(jnp.array([1.0, 2.0, 3.0, 0.0]))
    w = np.array([1.0, 2.0, 3.0, 0.0]) / 6
    assert float(weights.ess(log_w)) == pytest.approx(1 / np.sum(w**2), rel=1e-5)
    assert float(weights.ess(log_w + 1000.0)) == pytest.approx(1 / np.sum(w**2), rel=1e-5)
    assert float(weights.ess(jnp.full(3, -jnp.inf))) == 0.0
    assert float(weights.ess(jnp.array([0.0, jnp.nan, jnp.inf]))) == pytest.approx(1.0)
    beta = 0.3
    tempered = np.array([1.0, 2.0, 3.0]) ** beta
    expected = tempered.sum() ** 2 / np.sum(tempered**2) / 4  # the zero weight counts in n
    assert float(weights.ess_fraction(log_w, beta)) == pytest.approx(expected, rel=1e-6)

    normalized, ess = weights.normalize(jnp.stack([log_w, jnp.full(4, -jnp.inf)]))
    np.testing.assert_allclose(normalized[0], w, rtol=1e-6)
    np.testing.assert_allclose(normalized[1], 0.25)  # no finite weight: uniform
    np.testing.assert_allclose(ess, [1 / np.sum(w**2), 4.0], rtol=1e-6)

    def add(carry, value):  # float32: the compensated sum keeps the digits a plain sum loses
        naive, total, compensation = carry
        return (naive + value, *weights.kahan_add(total, compensation, value)), None

    zero = jnp.float32(0.0)
    values = jnp.full(20_000, 0.1, jnp.float32)
    (naive, total, _), _ = jax.lax.scan(add, (zero, zero, zero), values)
    assert abs(float(total) - 2000.0) < 1e-3 < abs(float(naive) - 2000.0)
    assert float(weights.kahan_add(jnp.float32(1.0), 0.0, -jnp.inf)[0]) == -np.inf

    log_z = np.log([1.0, 2.0, 3.0, 6.0])
    z = np.exp(log_z)
    mean, se = weights.combine_evidence(log_z + 500.0)  # no overflow
    assert mean == pytest.approx(np.log(z.mean()) + 500.0)
    assert se == pytest.approx(z.std(ddof=1) / (2 * z.mean()))
    # Student-t with R − 1 = 3 degrees of freedom: t₃(0.975) = 3.1824, not the Gaussian 1.96.
    low, high = weights.evidence_interval(log_z + 500.0)
    assert (high - low) / 2 == pytest.approx(3.1824 * se, rel=1e-4)
    assert (low + high) / 2 == pytest.approx(mean)
    low90, high90 = weights.evidence_interval(log_z, level=0.9)
    assert (high90 - low90) / 2 == pytest.approx(2.3534 * se, rel=1e-4)


def test_tempering_exponent_is_blackjax_bisection_with_our_edge_cases():
    """``warmup.tempering_exponent`` runs BlackJAX's dichotomy; it equals the 40-step bisection
    written out here on random pools (seed 0), to float32 precision, and keeps the edge cases:
    1 when β = 1 keeps the ESS, 0 when not even β = 0 does."""

    def bisection(log_r, target):
        lo, hi = 0.0, 1.0
        for _ in range(warmup.BISECTIONS):
            mid = 0.5 * (lo + hi)
            ok = float(weights.ess_fraction(log_r, jnp.float32(mid))) >= target
            lo, hi = (mid, hi) if ok else (lo, mid)
        return 1.0 if float(weights.ess_fraction(log_r)) >= target else lo

    solve = jax.jit(warmup.tempering_exponent, static_argnums=1)
    keys = jax.random.split(jax.random.key(0), 5)
    for key, scale in zip(keys, [0.5, 2.0, 5.0, 20.0, 80.0], strict=True):
        log_r = scale * jax.random.normal(key, (256,))
        expected = bisection(log_r, 0.05)
        assert float(solve(log_r, 0.05)) == pytest.approx(expected, abs=1e-6), scale
    assert float(solve(jnp.zeros(8), 0.05)) == 1.0
    few_finite = jnp.array([0.0] + [-jnp.inf] * 99)
    assert float(solve(few_finite, 0.05)) == 0.0
