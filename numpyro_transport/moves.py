"""Transition kernels y → y' over a step δ, each with a closed-form log-density.

With the drift summary (m̂, points p_j, weights w_j) of p_λ(x | y), the exact step
Y_{λ+δ} | Y_λ = y is y + δX' + √δ Z with X' ~ p_λ(· | y): mean y + δm, covariance δI + δ²C.

- V1 ``euler``: y' = y + δm̂ + √δ ε (Euler–Maruyama, exact for a frozen drift).
- V2 ``covariance`` (Reeves–Pfister): y' = y + δm̂ + √δ ε + δAᵀζ, with A_j = √w_j (p_j − p̄),
  ζ ~ N(0, I_K); covariance δ(I + BᵀB), B = √δ A. Its density uses Woodbury, never a d×d
  factorization:
  log N = −½[d log(2πδ) + log det(I_K + BBᵀ) + (‖r‖² − rᵀBᵀ(I_K + BBᵀ)⁻¹Br)/δ].
- V3 ``posterior``: J ~ Cat(w), y' = y + δp_J + √δ ε; a Gaussian mixture.

All functions act on one particle: ``y (d,)``, ``mean (d,)``, ``points (K, d)``,
``weights (K,)``; the sweep vmaps them.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from numpyro_transport.path import gaussian_logpdf

__all__ = ["Move", "euler", "covariance", "posterior", "get_move"]


class Move(NamedTuple):
    """A transition kernel: ``sample(key, y, mean, points, weights, δ) -> y'`` and
    ``logpdf(y', y, mean, points, weights, δ) -> log M(y → y')``."""

    sample: Callable
    logpdf: Callable


def _euler_sample(key, y, mean, points, weights, delta):
    return y + delta * mean + jnp.sqrt(delta) * jax.random.normal(key, y.shape)


def _euler_logpdf(y_new, y, mean, points, weights, delta):
    return gaussian_logpdf(y_new, y + delta * mean, delta)


euler = Move(_euler_sample, _euler_logpdf)


def _factor(points, weights, delta):
    """B = √δ A with rows √w_j (p_j − p̄)."""
    centre = weights @ points
    return jnp.sqrt(delta * weights)[:, None] * (points - centre)


def _covariance_sample(key, y, mean, points, weights, delta):
    k1, k2 = jax.random.split(key)
    b = _factor(points, weights, delta)
    zeta = jax.random.normal(k2, (points.shape[0],))
    return _euler_sample(k1, y, mean, points, weights, delta) + jnp.sqrt(delta) * (b.T @ zeta)


def _covariance_logpdf(y_new, y, mean, points, weights, delta):
    b = _factor(points, weights, delta)
    r = y_new - y - delta * mean
    s = jnp.eye(b.shape[0], dtype=b.dtype) + b @ b.T
    chol = jnp.linalg.cholesky(s)
    u = jax.scipy.linalg.solve_triangular(chol, b @ r, lower=True)
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    quad = (jnp.sum(r**2) - jnp.sum(u**2)) / delta
    d = y.shape[-1]
    return -0.5 * (d * jnp.log(2 * jnp.pi * delta) + log_det + quad)


covariance = Move(_covariance_sample, _covariance_logpdf)


def _posterior_sample(key, y, mean, points, weights, delta):
    k1, k2 = jax.random.split(key)
    j = jax.random.choice(k1, weights.shape[0], p=weights)
    return y + delta * points[j] + jnp.sqrt(delta) * jax.random.normal(k2, y.shape)


def _posterior_logpdf(y_new, y, mean, points, weights, delta):
    comp = gaussian_logpdf(y_new, y + delta * points, delta)
    return logsumexp(comp, b=weights)


posterior = Move(_posterior_sample, _posterior_logpdf)


def get_move(name: str) -> Move:
    """The move called ``name`` (see :data:`numpyro_transport.config.MOVES`)."""
    return {"euler": euler, "covariance": covariance, "posterior": posterior}[name]
