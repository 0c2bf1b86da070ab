"""Transition kernels y → y' over a step δ, each with a closed-form log-density.

With the drift summary (m̂, points p_j, weights w_j) of p_λ(x | y), the exact step
Y_{λ+δ} | Y_λ = y is y + δX' + √δ Z with X' ~ p_λ(· | y): mean y + δm, covariance δI + δ²C.

- V1 ``euler``: y' = y + δm̂ + √δ ε (Euler–Maruyama, exact for a frozen drift).
- V2 ``covariance`` (Reeves–Pfister): covariance δI + δ²C with the shrunk
  C = s·AᵀA + v·I (A_j = √w_j (p_j − p̄)), i.e. y' = y + δm̂ + σε + δ√s Aᵀζ with
  σ² = δ(1 + δv) and ζ ~ N(0, I_K). With B = δ√s A/σ its density uses Woodbury, never a d×d
  factorization:
  log N = −½[d log(2πσ²) + log det(I_K + BBᵀ) + (‖r‖² − rᵀBᵀ(I_K + BBᵀ)⁻¹Br)/σ²].
- V3 ``posterior``: J ~ Cat(w), y' = y + δp_J + √δ ε; a Gaussian mixture.

All functions act on one particle and its
:class:`~numpyro_transport.inner.DriftEstimate` row ``est`` (``mean (d,)``, ``points (K, d)``,
``weights (K,)``, scalars ``cov_scale`` and ``iso_var``); the sweep vmaps them.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from numpyro_transport.path import gaussian_logpdf

__all__ = ["Move", "euler", "covariance", "posterior", "get_move"]


class Move(NamedTuple):
    """A transition kernel: ``sample(key, y, est, δ) -> y'`` and
    ``logpdf(y', y, est, δ) -> log M(y → y')``."""

    sample: Callable
    logpdf: Callable


def _euler_sample(key, y, est, delta):
    return y + delta * est.mean + jnp.sqrt(delta) * jax.random.normal(key, y.shape)


def _euler_logpdf(y_new, y, est, delta):
    return gaussian_logpdf(y_new, y + delta * est.mean, delta)


euler = Move(_euler_sample, _euler_logpdf)


def _factor(est, delta):
    """σ² = δ(1 + δv) and B = δ√s A/σ with rows √w_j (p_j − p̄)."""
    var = delta * (1 + delta * est.iso_var)
    centre = est.weights @ est.points
    scale = delta * jnp.sqrt(est.cov_scale * est.weights / var)
    return var, scale[:, None] * (est.points - centre)


def _covariance_sample(key, y, est, delta):
    k1, k2 = jax.random.split(key)
    var, b = _factor(est, delta)
    noise = jax.random.normal(k1, y.shape) + b.T @ jax.random.normal(k2, (b.shape[0],))
    return y + delta * est.mean + jnp.sqrt(var) * noise


def _covariance_logpdf(y_new, y, est, delta):
    var, b = _factor(est, delta)
    r = y_new - y - delta * est.mean
    s = jnp.eye(b.shape[0], dtype=b.dtype) + b @ b.T
    chol = jnp.linalg.cholesky(s)
    u = jax.scipy.linalg.solve_triangular(chol, b @ r, lower=True)
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    quad = (jnp.sum(r**2) - jnp.sum(u**2)) / var
    d = y.shape[-1]
    return -0.5 * (d * jnp.log(2 * jnp.pi * var) + log_det + quad)


covariance = Move(_covariance_sample, _covariance_logpdf)


def _posterior_sample(key, y, est, delta):
    k1, k2 = jax.random.split(key)
    j = jax.random.choice(k1, est.weights.shape[0], p=est.weights)
    return y + delta * est.points[j] + jnp.sqrt(delta) * jax.random.normal(k2, y.shape)


def _posterior_logpdf(y_new, y, est, delta):
    comp = gaussian_logpdf(y_new, y + delta * est.points, delta)
    return logsumexp(comp, b=est.weights)


posterior = Move(_posterior_sample, _posterior_logpdf)


def get_move(name: str) -> Move:
    """The move called ``name`` (see :data:`numpyro_transport.config.MOVES`)."""
    return {"euler": euler, "covariance": covariance, "posterior": posterior}[name]
