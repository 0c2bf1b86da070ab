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
from numpyro_transport.path import gaussian_logpdf

__all__ = [
    "InnerDraws",
    "DriftEstimate",
    "new_noise",
    "refresh_noise",
    "draw",
    "log_g",
    "normalize",
    "estimate",
]


class InnerDraws(NamedTuple):
    """Every particle's own inner draws at its current (y, λ).

    - **x** - ``(N, M_max, d)`` draws from q(· | y); only the first ``b·M`` are active.
    - **log_r** - ``(N, M_max)`` log γ(x) − log N(x; 0, I); −∞ for inactive or non-finite.
    - **grad** - ``(N, M_max, d)`` ∇log γ(x), or ``None`` without the control variate.
    - **noise** - ``(N, M_max/M, M/2, d)`` the standard normal ξ behind the antithetic pairs.
    """

    x: jax.Array
    log_r: jax.Array
    grad: jax.Array | None
    noise: jax.Array


class DriftEstimate(NamedTuple):
    """A particle's summary of p_λ(x | y), as the moves consume it.

    - **mean** - ``(N, d)`` the drift m̂.
    - **points** - ``(N, K, d)`` support points of the empirical posterior.
    - **weights** - ``(N, K)`` their normalized weights; Ĉ = Σ_j w_j (p_j − p̄)(p_j − p̄)ᵀ.
    - **ess** - ``(N,)`` the particle's own inner ESS, 1/Σ ω̄².
    - **cov_scale**, **iso_var** - ``(N,)`` shrinkage of the covariance: the moves use
      ``cov_scale·Ĉ + iso_var·I`` (see :func:`shrink`).
    """

    mean: jax.Array
    points: jax.Array
    weights: jax.Array
    ess: jax.Array
    cov_scale: jax.Array
    iso_var: jax.Array


def new_noise(rng_key, num_particles, num_blocks_max, num_inner, dim):
    """Fresh ξ ~ N(0, I) of shape ``(N, num_blocks_max, num_inner/2, d)``."""
    return rng.normal(rng_key, (num_particles, num_blocks_max, num_inner // 2, dim))


def refresh_noise(rng_key, noise, rho):
    """Crank–Nicolson refresh ρξ + √(1−ρ²)η, which leaves N(0, I) invariant (reversibly)."""
    return rho * noise + jnp.sqrt(1 - rho**2) * rng.normal(rng_key, noise.shape)


def draw(logdensity_fn, noise, y, lam, num_blocks, with_grad):
    """The inner draws x = y/(1+λ) ± ξ/√(1+λ), evaluated on the first ``num_blocks`` blocks.

    Non-finite target values get r = −∞ (zero weight) and zero gradient.
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
    log_normal = -0.5 * jnp.sum(x**2, -1) - 0.5 * d * jnp.log(2 * jnp.pi)
    log_r = jnp.where(finite, logp, -jnp.inf) - log_normal
    if with_grad:
        grad = jnp.where(finite[..., None], grad.reshape(n, -1, d), 0.0)
        grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
    return InnerDraws(x, log_r, grad, noise)


def log_g(draws: InnerDraws, y, lam, num_active):
    """log Ĝ(y) = log c_λ(y) + log mean_j exp(r_j), over the ``num_active`` active draws."""
    log_c = jnp.where(lam > 0, gaussian_logpdf(y, 0.0, jnp.maximum(lam * (1 + lam), 1e-30)), 0.0)
    return log_c + logsumexp(draws.log_r, axis=-1) - jnp.log(num_active)


def normalize(log_w):
    """Normalized weights and ESS; an all-zero row falls back to uniform weights."""
    top = jnp.max(log_w, axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    w = jnp.exp(log_w - top)
    total = jnp.sum(w, axis=-1, keepdims=True)
    w = jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), 1.0 / w.shape[-1])
    return w, 1.0 / jnp.sum(w**2, axis=-1)


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
    """
    s = jnp.where(ess > 0, ess / jnp.where(ess > 0, ess + pseudo_count, 1.0), 0.0)
    fit_mean = y / (1 + lam)
    return s[:, None] * mean + (1 - s[:, None]) * fit_mean, s, (1 - s) / (1 + lam)


def estimate(
    rng_key, draws: InnerDraws, y, lam, num_blocks, num_points, neighbours, batch_size, pseudo_count
):
    """Drift summary of every particle, from the draws of its ``neighbours`` nearest particles
    (itself included; 1 = its own draws only).

    The pool is processed one inner block at a time over the ``num_blocks`` active blocks only,
    so inactive blocks cost nothing (also under ``vmap``, where the loop runs to the largest
    active count).
    """
    own_w, own_ess = normalize(draws.log_r)
    if neighbours == 1:
        mean = jnp.einsum("nm,nmd->nd", own_w, draws.x)
        if draws.grad is not None:
            mean = _gate(mean, jnp.einsum("nm,nmd->nd", own_w, draws.grad), y, lam)
        mean, scale, iso = shrink(mean, own_ess, y, lam, pseudo_count)
        return DriftEstimate(mean, draws.x, own_w, own_ess, scale, iso)

    n, num_blocks_max, half, d = draws.noise.shape
    m, k = 2 * half, neighbours
    by_block = lambda a: a.reshape((n, num_blocks_max, m) + a.shape[2:])  # noqa: E731
    x, log_r = by_block(draws.x), by_block(draws.log_r)
    grad = None if draws.grad is None else by_block(draws.grad)
    centres = y / (1 + lam)
    prec = 1 + lam
    # The nearest centre of particle i is its own (or an identical duplicate's): column 0.
    sq = jnp.sum(centres**2, -1)
    _, nearest = jax.lax.top_k(2 * centres @ centres.T - sq[None, :], k)

    def one(args):
        key, idx = args
        c = centres[idx]

        def block(b, carry):
            log_w, top, sums = carry
            pool = x[idx, b].reshape(k * m, d)
            log_q = -0.5 * prec * (jnp.sum(pool**2, -1)[:, None] - 2 * pool @ c.T + sq[idx])
            # Balance heuristic: the pool was drawn from (1/k) Σ_j q(· | y_j).
            lw = log_r[idx, b].reshape(-1) + log_q[:, 0] - logsumexp(log_q, axis=1)
            top_b = jnp.max(lw)
            e = jnp.exp(lw - jnp.where(jnp.isfinite(top_b), top_b, 0.0))
            s = [e @ pool] + ([] if grad is None else [e @ grad[idx, b].reshape(k * m, d)])
            sums = [a.at[b].set(v) for a, v in zip(sums, [jnp.sum(e), *s], strict=True)]
            return log_w.at[b].set(lw), top.at[b].set(top_b), sums

        sums = [jnp.zeros(num_blocks_max)] + [jnp.zeros((num_blocks_max, d))] * (
            1 if grad is None else 2
        )
        log_w0 = jnp.full((num_blocks_max, k * m), -jnp.inf)
        log_w, top, sums = jax.lax.fori_loop(
            0, num_blocks, block, (log_w0, jnp.full(num_blocks_max, -jnp.inf), sums)
        )
        # Combine the blocks, each summed relative to its own maximum.
        scale = jnp.exp(top - jnp.max(top))
        scale = jnp.where(jnp.isfinite(top), scale, 0.0)
        total, *moments = [scale @ v for v in sums]
        ok = total > 0
        w, _ = normalize(log_w.reshape(-1))
        ess = jnp.where(ok, 1.0 / jnp.sum(w**2), 0.0)
        mean = jnp.where(ok, moments[0] / jnp.where(ok, total, 1.0), c[0])
        if grad is not None:
            grad_mean = jnp.where(ok, moments[1] / jnp.where(ok, total, 1.0), 0.0)
            mean = _gate(mean, grad_mean, c[0] * prec, lam)
        flat = systematic(key, w, num_points)
        b, rest = jnp.divmod(flat, k * m)
        nb, j = jnp.divmod(rest, m)
        return mean, x[idx[nb], b, j], ess

    keys = jax.random.split(rng_key, n)
    mean, points, pool_ess = jax.lax.map(one, (keys, nearest), batch_size=batch_size)
    weights = jnp.full((n, num_points), 1.0 / num_points, draws.x.dtype)
    mean, scale, iso = shrink(mean, pool_ess, y, lam, pseudo_count)
    return DriftEstimate(mean, points, weights, own_ess, scale, iso)
