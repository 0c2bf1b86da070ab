"""Per-step diagnostics of whole sweeps, kept for reporting (ArviZ's ``transport`` group, plots).

A [`SweepRecord`][numpyro_transport.records.SweepRecord] holds one sweep's
[`StepInfo`][numpyro_transport.sweep.StepInfo] arrays and its scalars; records of several sweeps
stack them along leading axes. The kernel keeps fixed-size buffers of them in its state
([`empty_record`][numpyro_transport.records.empty_record],
[`write`][numpyro_transport.records.write]).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_transport.config import TransportConfig
from numpyro_transport.sweep import StepInfo, SweepResult, empty_steps

__all__ = ["SweepRecord", "sweep_record", "empty_record", "write"]


class SweepRecord(NamedTuple):
    """Per-step diagnostics of whole sweeps.

    One sweep's record has the shapes below; records of several sweeps stack them along leading
    axes (``(S,)``, or ``(chain, S)``).

    Attributes:
        steps: [`StepInfo`][numpyro_transport.sweep.StepInfo] arrays ``(max_steps,)``, the first
            K valid.
        num_steps: steps K of the sweep.
        log_evidence: the sweep's log Ẑ.
        temperature: tempering exponent β of the sweep (1 unless warming up).
        refit_accepted: whether the sweep's refit replaced the reference.
        iteration: MCMC iteration (or sweep index) that ran the sweep; −1 marks an empty slot.
    """

    steps: StepInfo
    num_steps: jax.Array
    log_evidence: jax.Array
    temperature: jax.Array
    refit_accepted: jax.Array
    iteration: jax.Array


def sweep_record(result: SweepResult, temperature, refit_accepted, iteration) -> SweepRecord:
    """The [`SweepRecord`][numpyro_transport.records.SweepRecord] of one sweep.

    Args:
        result: the sweep's [`SweepResult`][numpyro_transport.sweep.SweepResult].
        temperature: tempering exponent β of the sweep.
        refit_accepted: whether the sweep's refit replaced the reference.
        iteration: MCMC iteration (or sweep index) that ran the sweep.

    Returns:
        The one-sweep record.
    """
    return SweepRecord(
        result.steps,
        result.num_steps,
        result.log_evidence,
        jnp.asarray(temperature, jnp.float32),
        jnp.asarray(refit_accepted, bool),
        jnp.asarray(iteration, jnp.int32),
    )


def empty_record(size: int, config: TransportConfig) -> SweepRecord:
    """A record of ``size`` empty slots (iteration −1).

    Args:
        size: number of slots (the leading axis).
        config: the [`TransportConfig`][numpyro_transport.TransportConfig], for ``max_steps``.

    Returns:
        The empty record, with leading axis ``(size,)``.
    """
    return SweepRecord(
        empty_steps((size, config.max_steps)),
        jnp.zeros(size, jnp.int32),
        jnp.zeros(size),
        jnp.ones(size),
        jnp.zeros(size, bool),
        jnp.full(size, -1, jnp.int32),
    )


def write(record: SweepRecord, slot, condition, entry: SweepRecord) -> SweepRecord:
    """``record`` with the one-sweep ``entry`` written into ``slot`` (clipped) if ``condition``.

    Args:
        record: a record of several slots (leading axis).
        slot: the slot to write, clipped to the record's range; may be traced.
        condition: write only if true (a traced bool); otherwise ``record`` is unchanged.
        entry: the one-sweep record to write.

    Returns:
        The updated record.
    """
    slot = jnp.clip(slot, 0, record.iteration.shape[0] - 1)
    return jax.tree.map(
        lambda buf, v: jnp.where(condition, buf.at[slot].set(v), buf), record, entry
    )
