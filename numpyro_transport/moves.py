"""Transition kernels y → y' over a step δ, each with a closed-form log-density.

With the drift summary (m̂, points p_j, weights w_j) of p_λ(x | y), the exact step
Y_{λ+δ} | Y_λ = y is y + δX' + √δ Z with X' ~ p_λ(· | y): mean y + δm, covariance δI + δ²C.

- V1 ``euler``: y' = y + δm̂ + √δ ε (Euler–Maruyama, exact for a frozen drift).
- V2 ``covariance`` (Reeves–Pfister): covariance δI + δ²C with the shrunk
  C = s·AᵀA + v·I (A_j = √w_j (p_j − p̄)), i.e. y' = y + δm̂ + σε + δ√s Aᵀζ with
  σ² = δ(1 + δv) and ζ ~ N(0, I_K). With B = δ√s A/σ the covariance is σ²(I_d + BᵀB), and its
  density factorizes the smaller of two equal forms (Sylvester, Woodbury): never a d×d
  factorization when K < d, never a K×K one when d < K,
  log N = −½[d log(2πσ²) + log det(I_K + BBᵀ) + (‖r‖² − rᵀBᵀ(I_K + BBᵀ)⁻¹Br)/σ²]
        = −½[d log(2πσ²) + log det(I_d + BᵀB) + rᵀ(I_d + BᵀB)⁻¹r/σ²].
- V3 ``posterior``: J ~ Cat(w), y' = y + δp_J + √δ ε; a Gaussian mixture.

All functions act on one particle, its [`MoveNoise`][numpyro_transport.moves.MoveNoise] row and its
[`DriftEstimate`][numpyro_transport.drift.DriftEstimate] row ``est`` (``mean (d,)``,
``points (K, d)``, ``weights (K,)``, scalars ``cov_scale`` and ``iso_var``); the sweep vmaps them.
The noise is drawn for the whole population at once by
[`draw_noise`][numpyro_transport.moves.draw_noise].
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from numpyro_transport import rng
from numpyro_transport.path import gaussian_logpdf

__all__ = ["Move", "MoveNoise", "draw_noise", "euler", "covariance", "posterior", "get_move"]


class Move(NamedTuple):
    """A transition kernel and its log-density, on one particle.

    Attributes:
        sample: ``sample(noise, y, est, δ) -> y'``.
        logpdf: ``logpdf(y', y, est, δ) -> log M(y → y')``.
    """

    sample: Callable
    logpdf: Callable


class MoveNoise(NamedTuple):
    """The randomness of one move (leading axis N when drawn for the population).

    Attributes:
        eps: ``(d,)`` standard normal: the Brownian increment.
        zeta: ``(K,)`` standard normal: V2's extra covariance along the support points.
        u: uniform on [0, 1): V3's choice of a support point.
    """

    eps: jax.Array
    zeta: jax.Array
    u: jax.Array


def draw_noise(rng_key, num_particles, dim, num_points) -> MoveNoise:
    """Noise for every particle's move, whatever the move.

    Args:
        rng_key: a JAX PRNG key.
        num_particles: N.
        dim: d.
        num_points: K, support points of the drift estimate.

    Returns:
        Every particle's [`MoveNoise`][numpyro_transport.moves.MoveNoise] (leading axis N).
    """
    k1, k2, k3 = jax.random.split(rng_key, 3)
    return MoveNoise(
        rng.normal(k1, (num_particles, dim)),
        rng.normal(k2, (num_particles, num_points)),
        rng.uniform(k3, (num_particles,)),
    )


def _euler_sample(noise, y, est, delta):
    return y + delta * est.mean + jnp.sqrt(delta) * noise.eps


def _euler_logpdf(y_new, y, est, delta):
    return gaussian_logpdf(y_new, y + delta * est.mean, delta)


euler = Move(_euler_sample, _euler_logpdf)


def _factor(est, delta):
    """σ² = δ(1 + δv) and B = δ√s A/σ with rows √w_j (p_j − p̄)."""
    var = delta * (1 + delta * est.iso_var)
    centre = est.weights @ est.points
    scale = delta * jnp.sqrt(est.cov_scale * est.weights / var)
    return var, scale[:, None] * (est.points - centre)


def _covariance_sample(noise, y, est, delta):
    var, b = _factor(est, delta)
    return y + delta * est.mean + jnp.sqrt(var) * (noise.eps + b.T @ noise.zeta)


def _covariance_logpdf(y_new, y, est, delta):
    var, b = _factor(est, delta)
    r = y_new - y - delta * est.mean
    k, d = b.shape
    woodbury = k < d  # static: factorize the smaller matrix
    inner_product = b @ b.T if woodbury else b.T @ b
    chol = jnp.linalg.cholesky(jnp.eye(min(k, d), dtype=b.dtype) + inner_product)
    u = jax.scipy.linalg.solve_triangular(chol, b @ r if woodbury else r, lower=True)
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    quad = (jnp.sum(r**2) - jnp.sum(u**2) if woodbury else jnp.sum(u**2)) / var
    return -0.5 * (d * jnp.log(2 * jnp.pi * var) + log_det + quad)


covariance = Move(_covariance_sample, _covariance_logpdf)


def _posterior_sample(noise, y, est, delta):
    cdf = jnp.cumsum(est.weights)
    j = jnp.minimum(jnp.searchsorted(cdf, noise.u * cdf[-1], side="right"), cdf.shape[0] - 1)
    return y + delta * est.points[j] + jnp.sqrt(delta) * noise.eps


def _posterior_logpdf(y_new, y, est, delta):
    comp = gaussian_logpdf(y_new, y + delta * est.points, delta)
    return logsumexp(comp, b=est.weights)


posterior = Move(_posterior_sample, _posterior_logpdf)


def get_move(name: str) -> Move:
    """The move called ``name`` (see
    [`numpyro_transport.config.MOVES`][numpyro_transport.config.MOVES]).

    Args:
        name: ``"euler"``, ``"covariance"`` or ``"posterior"``.

    Returns:
        The move, a [`Move`][numpyro_transport.moves.Move].
    """
    return {"euler": euler, "covariance": covariance, "posterior": posterior}[name]
