"""Checks of what a user passes in, run once at the front-ends' boundary, before anything compiles.

Every check raises a ``ValueError`` or ``TypeError`` that names the argument, the value it got
and what to pass instead. Shapes of log-densities are checked with ``jax.eval_shape`` (no
evaluation, no compilation); references on the host.
"""

import difflib
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "boolean",
    "integer",
    "real",
    "known_options",
    "check_logdensity",
    "check_reference",
]


def integer(name: str, value, minimum: int = 1, why: str = "") -> int:
    """``value`` as a Python int, if it is an integer (not a bool) of at least ``minimum``.

    Args:
        name: the argument's name, for the error.
        value: what the user passed.
        minimum: the smallest value allowed.
        why: the reason for the minimum, appended to its error.

    Returns:
        ``int(value)``.
    """
    value = _python_scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = f" such as {name}={max(minimum, round(value))}" if _is_real(value) else ""
        raise TypeError(
            f"{name}={value!r} must be an integer (got {type(value).__name__}): pass an int{hint}."
        )
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be at least {minimum}{why}.")
    return int(value)


def boolean(name: str, value) -> bool:
    """``value`` as a Python bool, if it is one (a NumPy or JAX 0-d bool included).

    Args:
        name: the argument's name, for the error.
        value: what the user passed.

    Returns:
        ``bool(value)``.
    """
    value = _python_scalar(value)
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False.")
    return value


def _python_scalar(value):
    """A 0-d NumPy or JAX number as the Python number it holds (``jnp.int32(64)`` → 64); anything
    else, traced values included, as it is."""
    if isinstance(value, (np.ndarray, np.generic, jax.Array)) and not isinstance(
        value, jax.core.Tracer
    ):
        if np.ndim(value) == 0 and np.asarray(value).dtype.kind in "biuf":
            return np.asarray(value).item()
    return value


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def real(name: str, value, low=-math.inf, high=math.inf, *, open_low=False, open_high=False):
    """``value`` as a Python float, if it is a finite real number in the given range.

    Args:
        name: the argument's name, for the error.
        value: what the user passed.
        low: the lower bound.
        high: the upper bound.
        open_low: whether ``low`` itself is excluded.
        open_high: whether ``high`` itself is excluded.

    Returns:
        ``float(value)``.
    """
    value = _python_scalar(value)
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        raise TypeError(f"{name}={value!r} must be a real number (got {type(value).__name__}).")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be finite.")
    below = value <= low if open_low else value < low
    above = value >= high if open_high else value > high
    if below or above:
        if low == 0 and high == math.inf:
            raise ValueError(
                f"{name}={value!r} must be {'positive' if open_low else 'non-negative'}."
            )
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ValueError(f"{name}={value!r} must be in {left}{low:g}, {high:g}{right}.")
    return float(value)


def known_options(options: dict, valid, where: str):
    """Raise a ``TypeError`` naming each unknown option, with the closest valid name.

    Args:
        options: the keyword options the user passed.
        valid: the names that are accepted.
        where: the function that received them, for the error.
    """
    unknown = sorted(set(options) - set(valid))
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(
        f"{where} got unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)}. "
        f"Valid options: {', '.join(sorted(valid))}."
    )


def check_logdensity(logdensity_fn, dim: int, what: str = "logdensity_fn"):
    """Check, without evaluating it, that ``logdensity_fn`` maps a ``(dim,)`` vector to a scalar.

    Args:
        logdensity_fn: the flat log-density ``u (d,) -> log p(u)``.
        dim: d.
        what: how the error names the function.
    """
    point = jax.ShapeDtypeStruct((dim,), jnp.result_type(float))
    out = jax.eval_shape(logdensity_fn, point)
    leaves = jax.tree.leaves(out)
    if len(leaves) != 1 or not hasattr(out, "shape"):
        raise TypeError(
            f"{what} must return one scalar, the log-density; it returned "
            f"{type(out).__name__} {jax.tree.map(lambda a: a.shape, out)}. Return e.g. the "
            "sum of the log-probability terms."
        )
    if out.shape != ():
        raise TypeError(
            f"{what} must return a scalar (shape ()), the log-density; it returned shape "
            f"{out.shape}. Sum the terms (jnp.sum) or index the single value (value[0])."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{what} must return a floating-point scalar; it returned {out.dtype}.")


def check_reference(mean, cov, dim: int | None, what: str = "reference"):
    """Check a reference ``(mean, cov)``: shapes, and on the host finiteness and
    positive-definiteness (traced values, as under ``jit``, get the shape check only).

    Args:
        mean: ``(d,)`` mean.
        cov: ``(d, d)`` covariance.
        dim: the target's dimension, or ``None`` when the reference sets it.
        what: how the error names the argument.

    Returns:
        ``(mean, cov)``: float64 NumPy arrays on the host, the traced values under ``jit``.
    """
    traced = isinstance(mean, jax.core.Tracer) or isinstance(cov, jax.core.Tracer)
    if not traced:
        mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    d = mean.shape[0] if dim is None and np.ndim(mean) == 1 else dim
    if np.shape(mean) != (d,) or np.shape(cov) != (d, d):
        raise ValueError(
            f"{what}=(mean, cov) has shapes {np.shape(mean)} and {np.shape(cov)}; the target "
            f"has dimension {d}, so they must be ({d},) and ({d}, {d}) (for a model: the "
            "flattened unconstrained latent vector)."
        )
    if traced:
        return mean, cov
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise ValueError(f"{what}=(mean, cov) must be finite.")
    smallest = np.linalg.eigvalsh(0.5 * (cov + cov.T))[0]
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12) or smallest <= 0:
        raise ValueError(
            f"{what}'s covariance must be symmetric positive-definite; its smallest eigenvalue "
            f"is {smallest:.3g}. Pass e.g. cov + c·I with c > 0, or a diagonal covariance."
        )
    return mean, cov
