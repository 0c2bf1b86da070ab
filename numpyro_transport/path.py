"""The stochastic-localization (SL) path and its closed-form kernels.

Internally the transport runs the observation process

    Y_λ = λ X + W_λ,    X ~ π,  W a standard Brownian motion,  λ ∈ [0, Λ],

whose law at λ is ν_λ, with Z·ν_λ(y) = ∫ γ(x) N(y; λx, λI) dx. It solves
``dY = m_λ(Y) dλ + dB`` with drift m_λ(y) = E[X | Y_λ = y], and conditionally on Y_λ = y the
signal has law p_λ(x | y) ∝ γ(x) N(x; y/λ, I/λ).

**Map to the interpolant** X_t = α_t ξ + β_t X (ξ ~ N(0, I)): λ = β_t²/α_t² and
Y = (β_t/α_t²) X_t. For the linear interpolant α_t = 1 − t, β_t = t, so
λ = (t/(1−t))² and t = √λ/(1 + √λ). The SL member of this family of SDEs (all with the same
marginals) is the one whose transitions and time reversal are Gaussian, which is what makes the
SMC weights computable.
"""

import jax.numpy as jnp
from jax.scipy.stats import norm

__all__ = [
    "backward_logpdf",
    "gaussian_logpdf",
    "standard_normal_logpdf",
    "linear_interpolant",
]


def gaussian_logpdf(x, mean, var):
    """log N(x; mean, var·I) for ``(..., d)`` arrays and a scalar variance.

    Args:
        x: ``(..., d)`` points.
        mean: the mean, broadcast against ``x``.
        var: the variance of every coordinate (scalar, or broadcast against ``x[..., 0]``).

    Returns:
        ``(...,)`` log-densities.
    """
    scale = jnp.sqrt(jnp.asarray(var))[..., None]
    return jnp.sum(norm.logpdf(x, mean, scale), axis=-1)


def standard_normal_logpdf(x):
    """log N(x; 0, I) for ``(..., d)`` arrays.

    Args:
        x: ``(..., d)`` points.

    Returns:
        ``(...,)`` log-densities.
    """
    return gaussian_logpdf(x, 0.0, 1.0)


def backward_logpdf(y_prev, y_next, lam_prev, lam_next):
    """The Brownian-bridge backward kernel, free of π.

    Y_{λ} | Y_{λ'} = y' ~ N((λ/λ') y', λ(1 − λ/λ') I) for λ < λ'. At λ = 0 the kernel is a
    point mass at 0, whose log-density we take as 0 (the first SMC weight has no backward
    factor).

    Args:
        y_prev: ``(..., d)`` positions y at the earlier λ.
        y_next: ``(..., d)`` positions y' at the later λ'.
        lam_prev: λ ≥ 0.
        lam_next: λ' > λ.

    Returns:
        ``(...,)`` log L(y' → y).
    """
    ratio = lam_prev / lam_next
    var = jnp.where(lam_prev > 0, lam_prev * (1 - ratio), 1.0)
    logp = gaussian_logpdf(y_prev, ratio * y_next, var)
    return jnp.where(lam_prev > 0, logp, 0.0)


def linear_interpolant(y, lam):
    """Map SL coordinates (y, λ), λ > 0, to the linear interpolant (t, X_t = (1−t) ξ + t X).

    With α = 1 − t and β = t: t = √λ/(1+√λ) and X_t = α² y / β. (At λ = 0, X_0 = ξ only in
    law; the function returns t = 0 and X_t = 0 there.)

    Args:
        y: ``(..., d)`` SL positions.
        lam: λ ≥ 0, broadcast against ``y[..., 0]``.

    Returns:
        ``(t, x_t)``: the time t and the interpolant X_t, of the shape of ``y``.
    """
    root = jnp.sqrt(lam)
    t = root / (1 + root)
    safe_t = jnp.where(t > 0, t, 1.0)
    x_t = jnp.where(t > 0, (1 - t) ** 2 / safe_t, 0.0)[..., None] * y
    return t, x_t
