"""The inner Monte Carlo estimator of the drift m_λ(y) = E[X | Y_λ = y] and of Z·ν_λ(y).

Each particle draws M points from the Gaussian-fit posterior (I2), in antithetic pairs,

    q(x | y) = N(x; y/(1+λ), I/(1+λ)),

which is exact when the whitened target is N(0, I). Since N(x; 0, I) N(y; λx, λI) =
c_λ(y) q(x | y) with c_λ(y) = N(y; 0, λ(1+λ) I), the inner weights are

    ω_j = c_λ(y) · γ(x_j) / N(x_j; 0, I) = c_λ(y) · exp(r_j),

and Ĝ(y) = (1/M) Σ_j ω_j is an unbiased estimate of Z·ν_λ(y); it enters the SMC weights.

The drift only feeds the proposal, so it may pool other particles' draws (I3). Particle i pools
the draws of its k nearest particles 𝒩(i) (nearest in centre y/(1+λ), itself included): a
stratified sample of Q_i = (1/k) Σ_{j∈𝒩(i)} q(· | y_j), weighed by the balance heuristic
exp(r_l) q(x_l | y_i) / Q_i(x_l). With k = N every particle uses the whole population's draws;
k ≈ 16 keeps most of the gain at O(N k² M d) cost instead of O(N² M d), since far particles'
draws get negligible weight. The optional gradient control variate
(Stein: E[∇log γ(X)] + y − λ m = 0) gives m̂_g = (m̂ + y + Σ ω̄ ∇log γ)/(1 + λ), exact for a
Gaussian target.

Inner sizes adapt by blocks: the first ``b`` blocks of ``num_inner`` draws are evaluated; the
rest are masked with r = −∞ and cost nothing.

**Correlated inner noise.** The draws are x_j = y/(1+λ) ± ξ_j/√(1+λ) with standard normal ξ
carried by the particle. Between steps ξ is refreshed by the N(0, I)-reversible Crank–Nicolson
move ξ' = ρξ + √(1−ρ²)η. Treating ξ as part of the particle state (extended target
Ĝ_k(y; ξ) N(ξ; 0, I), backward kernel for ξ its own reversal), the SMC weight keeps exactly the
form Ĝ_k(y')L/(Ĝ_{k−1}(y)M): the φ's and the refresh kernels cancel. With ρ near 1 the Monte
Carlo noise of log Ĝ_k − log Ĝ_{k−1} nearly cancels over small steps (as in the correlated
pseudo-marginal method); ρ = 0 gives independent draws at every step.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.smc.resampling import systematic
from jax.scipy.special import logsumexp

from numpyro_transport import rng
from numpyro_transport.config import TransportConfig
from numpyro_transport.path import gaussian_logpdf, standard_normal_logpdf
from numpyro_transport.weights import normalize

__all__ = [
    "InnerDraws",
    "DriftEstimate",
    "new_noise",
    "refresh_noise",
    "draw",
    "log_g",
    "estimate",
]


class InnerDraws(NamedTuple):
    """Every particle's own inner draws at its current (y, λ).

    Attributes:
        x: ``(N, M_max, d)`` draws from q(· | y); only the first ``b·M`` are active.
        log_r: ``(N, M_max)`` log γ(x) − log N(x; 0, I); −∞ for inactive or non-finite.
        grad: ``(N, M_max, d)`` ∇log γ(x), or ``None`` without the control variate.
        noise: ``(N, M_max/M, M/2, d)`` the standard normal ξ behind the antithetic pairs.
        num_positive_infinite: ``(N,)`` inner draws where log γ was +∞ (their r is −∞ too; the
            front-ends report them as an error).
    """

    x: jax.Array
    log_r: jax.Array
    grad: jax.Array | None
    noise: jax.Array
    num_positive_infinite: jax.Array


class DriftEstimate(NamedTuple):
    """A particle's summary of p_λ(x | y), as the moves consume it.

    The moves use the shrunk covariance ``cov_scale·Ĉ + iso_var·I`` (see
    [`shrink`][numpyro_transport.drift.shrink]).

    Attributes:
        mean: ``(N, d)`` the drift m̂.
        points: ``(N, K, d)`` support points of the empirical posterior.
        weights: ``(N, K)`` their normalized weights; Ĉ = Σ_j w_j (p_j − p̄)(p_j − p̄)ᵀ.
        ess: ``(N,)`` the particle's own inner ESS, 1/Σ ω̄².
        cov_scale: ``(N,)`` shrinkage of the covariance: the factor of Ĉ.
        iso_var: ``(N,)`` shrinkage of the covariance: the variance added along every axis.
    """

    mean: jax.Array
    points: jax.Array
    weights: jax.Array
    ess: jax.Array
    cov_scale: jax.Array
    iso_var: jax.Array


def new_noise(rng_key, num_particles, num_blocks_max, num_inner, dim):
    """Fresh ξ ~ N(0, I) of shape ``(N, num_blocks_max, num_inner/2, d)``.

    Args:
        rng_key: a JAX PRNG key.
        num_particles: N.
        num_blocks_max: the largest number of inner blocks (``config.max_inner_blocks``).
        num_inner: M, inner draws per block (even: one ξ per antithetic pair).
        dim: d.

    Returns:
        The standard normal noise ξ.
    """
    return rng.normal(rng_key, (num_particles, num_blocks_max, num_inner // 2, dim))


def refresh_noise(rng_key, noise, rho):
    """Crank–Nicolson refresh ρξ + √(1−ρ²)η, which leaves N(0, I) invariant (reversibly).

    Args:
        rng_key: a JAX PRNG key for the fresh η ~ N(0, I).
        noise: the current ξ, any shape.
        rho: ρ in [0, 1] (``config.inner_correlation``); 0 gives independent noise.

    Returns:
        The refreshed ξ, of the shape of ``noise``.
    """
    return rho * noise + jnp.sqrt(1 - rho**2) * rng.normal(rng_key, noise.shape)


def draw(logdensity_fn, noise, y, lam, num_blocks, with_grad):
    """The inner draws x = y/(1+λ) ± ξ/√(1+λ), evaluated on the first ``num_blocks`` blocks.

    Non-finite target values get r = −∞ (zero weight) and zero gradient.

    Args:
        logdensity_fn: the whitened target ``x (d,) -> log γ(x)``.
        noise: ``(N, num_blocks_max, M/2, d)`` standard normal ξ (see
            [`new_noise`][numpyro_transport.drift.new_noise]).
        y: ``(N, d)`` particle positions.
        lam: λ, scalar.
        num_blocks: inner blocks to evaluate; the others get r = −∞ and cost nothing.
        with_grad: also compute ∇log γ (static bool; for the gradient control variate).

    Returns:
        Every particle's [`InnerDraws`][numpyro_transport.drift.InnerDraws].
    """
    n, num_blocks_max, half, d = noise.shape
    xi = jnp.concatenate([noise, -noise], axis=2)
    blocks = y[:, None, None, :] / (1 + lam) + xi / jnp.sqrt(1 + lam)
    if with_grad:
        fn = jax.vmap(jax.vmap(jax.value_and_grad(logdensity_fn)))
    else:
        fn = jax.vmap(jax.vmap(lambda z: (logdensity_fn(z), None)))

    def body(b, carry):
        logp, grad = carry
        lp, g = fn(blocks[:, b])
        logp = logp.at[:, b].set(lp)
        if with_grad:
            grad = grad.at[:, b].set(g)
        return logp, grad

    logp0 = jnp.full(blocks.shape[:3], -jnp.inf, blocks.dtype)
    grad0 = jnp.zeros_like(blocks) if with_grad else None
    logp, grad = jax.lax.fori_loop(0, num_blocks, body, (logp0, grad0))
    x = blocks.reshape(n, -1, d)
    logp = logp.reshape(n, -1)
    finite = jnp.isfinite(logp)
    log_r = jnp.where(finite, logp, -jnp.inf) - standard_normal_logpdf(x)
    if with_grad:
        grad = jnp.where(finite[..., None], grad.reshape(n, -1, d), 0.0)
        grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
    positive_infinite = jnp.sum(logp == jnp.inf, axis=-1, dtype=jnp.int32)
    return InnerDraws(x, log_r, grad, noise, positive_infinite)


def log_g(draws: InnerDraws, y, lam, num_active):
    """log Ĝ(y) = log c_λ(y) + log mean_j exp(r_j), over the ``num_active`` active draws.

    Args:
        draws: the particles' [`InnerDraws`][numpyro_transport.drift.InnerDraws] at (y, λ).
        y: ``(N, d)`` particle positions.
        lam: λ, scalar.
        num_active: number of active inner draws, ``b·M`` (inactive ones have r = −∞).

    Returns:
        ``(N,)`` log Ĝ(y) of every particle.
    """
    log_c = jnp.where(lam > 0, gaussian_logpdf(y, 0.0, jnp.maximum(lam * (1 + lam), 1e-30)), 0.0)
    return log_c + logsumexp(draws.log_r, axis=-1) - jnp.log(num_active)


def _gate(mean, grad_mean, y, lam):
    """Gradient control variate: m̂_g = (m̂ + y + Σ ω̄ ∇log γ)/(1+λ)."""
    return (mean + y + grad_mean) / (1 + lam)


def shrink(mean, ess, y, lam, pseudo_count):
    """Shrink a self-normalized estimate towards the Gaussian-fit posterior N(y/(1+λ), I/(1+λ)).

    With ``e`` effective draws and ``κ = pseudo_count``, s = e/(e+κ) and
    m = s·m̂ + (1−s)·y/(1+λ), C = s·Ĉ + (1−s)·I/(1+λ). With few effective draws (a degenerate
    importance sample in high dimension) the drift falls back on the reference's Gaussian fit
    instead of one arbitrary draw; with many it is the Monte Carlo estimate. The drift only
    feeds the proposal, so exactness is untouched.

    Args:
        mean: ``(N, d)`` self-normalized estimate m̂.
        ess: ``(N,)`` effective number of draws e behind each estimate.
        y: ``(N, d)`` particle positions.
        lam: λ, scalar.
        pseudo_count: κ ≥ 0 (``config.shrinkage``); 0 keeps the Monte Carlo estimate.

    Returns:
        The shrunk mean ``(N, d)``, the factor s of Ĉ ``(N,)`` and the isotropic variance
        (1−s)/(1+λ) ``(N,)``: ``DriftEstimate``'s ``mean``, ``cov_scale`` and ``iso_var``.
    """
    s = jnp.where(ess > 0, ess / jnp.where(ess > 0, ess + pseudo_count, 1.0), 0.0)
    fit_mean = y / (1 + lam)
    return s[:, None] * mean + (1 - s[:, None]) * fit_mean, s, (1 - s) / (1 + lam)


def estimate(rng_key, draws: InnerDraws, y, lam, num_blocks, config: TransportConfig):
    """Drift summary of every particle, from the draws of its nearest particles.

    Each particle pools the draws of its ``config.neighbours`` nearest particles (itself
    included; 1 = its own draws only), with ``config.max_inner`` support points,
    ``config.pool_batch`` particles per chunk and shrinkage ``config.shrinkage``.

    The pool is processed one inner block at a time over the ``num_blocks`` active blocks only,
    so inactive blocks cost nothing (also under ``vmap``, where the loop runs to the largest
    active count).

    Args:
        rng_key: a JAX PRNG key (systematic resampling of the pooled support points).
        draws: the particles' own [`InnerDraws`][numpyro_transport.drift.InnerDraws] at (y, λ).
        y: ``(N, d)`` particle positions.
        lam: λ, scalar.
        num_blocks: inner blocks active in ``draws``.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].

    Returns:
        Every particle's [`DriftEstimate`][numpyro_transport.drift.DriftEstimate].
    """
    own_w, own_ess = normalize(draws.log_r)
    if config.neighbours == 1:
        mean = jnp.einsum("nm,nmd->nd", own_w, draws.x)
        if draws.grad is not None:
            mean = _gate(mean, jnp.einsum("nm,nmd->nd", own_w, draws.grad), y, lam)
        mean, scale, iso = shrink(mean, own_ess, y, lam, config.shrinkage)
        return DriftEstimate(mean, draws.x, own_w, own_ess, scale, iso)
    mean, points, pool_ess = _pooled(rng_key, draws, y, lam, num_blocks, config)
    weights = jnp.full(points.shape[:2], 1.0 / points.shape[1], draws.x.dtype)
    mean, scale, iso = shrink(mean, pool_ess, y, lam, config.shrinkage)
    return DriftEstimate(mean, points, weights, own_ess, scale, iso)


class _Pool(NamedTuple):
    """The population's inner draws by block, ``(N, blocks, M, ...)``, and the centres
    y/(1+λ) of their proposals q(· | y) = N(y/(1+λ), I/(1+λ))."""

    x: jax.Array
    log_r: jax.Array
    grad: jax.Array | None
    centres: jax.Array
    sq: jax.Array
    prec: jax.Array


def _pooled(rng_key, draws: InnerDraws, y, lam, num_blocks, config: TransportConfig):
    """Each particle's self-normalized mean, ``config.max_inner`` support points (systematic
    resample) and ESS over the pooled draws of its k nearest particles (balance heuristic)."""
    n, num_blocks_max, half, _ = draws.noise.shape
    by_block = lambda a: a.reshape((n, num_blocks_max, 2 * half) + a.shape[2:])  # noqa: E731
    centres = y / (1 + lam)
    sq = jnp.sum(centres**2, -1)
    grad = None if draws.grad is None else by_block(draws.grad)
    pool = _Pool(by_block(draws.x), by_block(draws.log_r), grad, centres, sq, 1 + lam)
    # The nearest centre of particle i is its own (or an identical duplicate's): column 0.
    _, nearest = jax.lax.top_k(2 * centres @ centres.T - sq[None, :], config.neighbours)

    def one(args):
        key, idx = args
        log_w, top, sums = _block_sums(pool, idx, num_blocks)
        # Combine the blocks, each summed relative to its own maximum.
        scale = jnp.where(jnp.isfinite(top), jnp.exp(top - jnp.max(top)), 0.0)
        total, *moments = [scale @ v for v in sums]
        ok = total > 0
        w, _ = normalize(log_w.reshape(-1))
        c = centres[idx[0]]
        mean = jnp.where(ok, moments[0] / jnp.where(ok, total, 1.0), c)
        if grad is not None:
            grad_mean = jnp.where(ok, moments[1] / jnp.where(ok, total, 1.0), 0.0)
            mean = _gate(mean, grad_mean, c * pool.prec, lam)
        size = idx.shape[0] * pool.x.shape[2]
        b, rest = jnp.divmod(systematic(key, w, config.max_inner), size)
        nb, j = jnp.divmod(rest, pool.x.shape[2])
        return mean, pool.x[idx[nb], b, j], jnp.where(ok, 1.0 / jnp.sum(w**2), 0.0)

    keys = jax.random.split(rng_key, n)
    return jax.lax.map(one, (keys, nearest), batch_size=config.pool_batch)


def _block_sums(pool: _Pool, idx, num_blocks):
    """Balance-heuristic log-weights of the pool of particles ``idx`` (``(blocks, k·M)``), each
    block's maximum, and per block Σe, Σe·x (and Σe·∇log γ), e = exp(log w − max)."""
    _, num_blocks_max, m, d = pool.x.shape
    k = idx.shape[0]
    c = pool.centres[idx]

    def block(b, carry):
        log_w, top, sums = carry
        points = pool.x[idx, b].reshape(k * m, d)
        log_q = (
            -0.5 * pool.prec * (jnp.sum(points**2, -1)[:, None] - 2 * points @ c.T + pool.sq[idx])
        )
        # Balance heuristic: the pool was drawn from (1/k) Σ_j q(· | y_j).
        lw = pool.log_r[idx, b].reshape(-1) + log_q[:, 0] - logsumexp(log_q, axis=1)
        top_b = jnp.max(lw)
        e = jnp.exp(lw - jnp.where(jnp.isfinite(top_b), top_b, 0.0))
        s = [e @ points]
        if pool.grad is not None:
            s.append(e @ pool.grad[idx, b].reshape(k * m, d))
        sums = [a.at[b].set(v) for a, v in zip(sums, [jnp.sum(e), *s], strict=True)]
        return log_w.at[b].set(lw), top.at[b].set(top_b), sums

    num_moments = 1 if pool.grad is None else 2
    sums = [jnp.zeros(num_blocks_max)] + [jnp.zeros((num_blocks_max, d))] * num_moments
    log_w0 = jnp.full((num_blocks_max, k * m), -jnp.inf)
    top0 = jnp.full(num_blocks_max, -jnp.inf)
    return jax.lax.fori_loop(0, num_blocks, block, (log_w0, top0, sums))
