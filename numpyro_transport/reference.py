"""The Gaussian reference (preconditioner) ``u = μ̂ + L x``.

The transport runs in whitened coordinates x, where the target is

    log γ(x) = log p(μ̂ + L x) + log|det L|,

so that ∫γ(x) dx = ∫p(u) du = Z. Forgetting ``log|det L|`` shifts log Ẑ by a constant.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_transport.path import standard_normal_logpdf

__all__ = [
    "Reference",
    "from_moments",
    "from_samples",
    "weighted_moments",
    "broad",
    "whiten",
    "to_original",
]


class Reference(NamedTuple):
    """Gaussian reference N(mean, scale_tril scale_trilᵀ).

    Attributes:
        mean: ``(d,)`` centre μ̂.
        scale_tril: ``(d, d)`` lower-triangular factor L with positive diagonal.
    """

    mean: jax.Array
    scale_tril: jax.Array

    @property
    def log_det(self) -> jax.Array:
        """log|det L|."""
        return jnp.sum(jnp.log(jnp.diagonal(self.scale_tril)))


def from_moments(mean, cov, jitter=1e-6) -> Reference:
    """Reference from a mean and a covariance.

    Args:
        mean: ``(d,)`` mean.
        cov: ``(d, d)`` covariance (symmetrized here).
        jitter: relative jitter: each coordinate's variance (the mean variance where it is
            0) times this is added to the diagonal. It keeps the Cholesky factor finite and
            leaves the correlations of coordinates on very different scales as they are (a
            jitter relative to the mean variance would swamp a narrow coordinate).

    Returns:
        N(mean, cov), as a [`Reference`][numpyro_transport.Reference].
    """
    mean = jnp.asarray(mean, dtype=jnp.result_type(float))
    cov = jnp.asarray(cov, dtype=mean.dtype)
    cov = 0.5 * (cov + cov.T)
    variances = jnp.diagonal(cov)
    variances = jnp.where(variances > 0, variances, jnp.mean(variances))
    cov = cov + jitter * jnp.diag(variances)
    return Reference(mean, jnp.linalg.cholesky(cov))


def from_samples(samples, weights=None, jitter=1e-6) -> Reference:
    """Moment-matched reference from ``(n, d)`` samples with optional normalized weights.

    Moment matching covers every mode the samples visit, which a Laplace fit would not.

    Args:
        samples: ``(n, d)`` samples.
        weights: ``(n,)`` non-negative weights (normalized here); ``None`` for equal weights.
        jitter: relative jitter of [`from_moments`][numpyro_transport.reference.from_moments].

    Returns:
        The moment-matched [`Reference`][numpyro_transport.Reference].
    """
    return from_moments(*weighted_moments(samples, weights), jitter)


def weighted_moments(samples, weights=None):
    """Mean and covariance of ``(n, d)`` samples under optional weights (normalized here).

    Args:
        samples: ``(n, d)`` samples.
        weights: ``(n,)`` non-negative weights; ``None`` for equal weights.

    Returns:
        ``(mean, cov)``, of shapes ``(d,)`` and ``(d, d)``.
    """
    samples = jnp.asarray(samples)
    n = samples.shape[0]
    weights = jnp.full(n, 1.0 / n) if weights is None else weights / jnp.sum(weights)
    mean = weights @ samples
    centred = samples - mean
    return mean, (centred * weights[:, None]).T @ centred


def broad(dim: int, scale: float = 1.0) -> Reference:
    """The fallback N(0, scale² I).

    Args:
        dim: d.
        scale: the standard deviation of every coordinate.

    Returns:
        N(0, scale² I), as a [`Reference`][numpyro_transport.Reference].
    """
    return Reference(jnp.zeros(dim), scale * jnp.eye(dim))


def whiten(logdensity_fn, reference: Reference, temperature=1.0):
    """The target in whitened coordinates, ``x -> log p(μ̂ + L x) + log|det L|``.

    With ``temperature`` β < 1 it is tempered towards the reference,
    ``β (log p(μ̂ + L x) + log|det L|) + (1 − β) log N(x; 0, I)`` (used by the warm-up only).

    Args:
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        reference: the [`Reference`][numpyro_transport.Reference] (μ̂, L).
        temperature: β in (0, 1]; may be traced.

    Returns:
        The whitened log-density ``x (d,) -> log γ(x)``.
    """

    def whitened(x):
        log_p = logdensity_fn(to_original(reference, x)) + reference.log_det
        log_ref = standard_normal_logpdf(x)
        return jnp.where(temperature == 1, log_p, temperature * log_p + (1 - temperature) * log_ref)

    return whitened


def to_original(reference: Reference, x):
    """Map whitened ``x`` (``(..., d)``) back to ``u = μ̂ + L x``.

    Args:
        reference: the [`Reference`][numpyro_transport.Reference] (μ̂, L).
        x: ``(..., d)`` whitened points.

    Returns:
        ``(..., d)`` points u in the original coordinates.
    """
    return reference.mean + x @ reference.scale_tril.T
