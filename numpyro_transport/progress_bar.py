"""A tqdm progress bar over the sweeps of a run, fed from ``jit`` by ``jax.debug.callback``.

The jitted sweep always calls the same host function
[`update`][numpyro_transport.progress_bar.update] (so opening a bar never causes a recompilation);
[`bar`][numpyro_transport.progress_bar.bar] opens the bar it feeds. Within a sweep, progress is
log(1 + λ)/log(1 + Λ), which tracks the number of I-MMSE steps better than λ itself.
"""

import contextlib
import math
import sys

from tqdm.auto import tqdm

__all__ = ["bar", "update", "add_sweeps", "status"]

_active: dict = {}


@contextlib.contextmanager
def bar(num_sweeps: int, max_lambda: float, desc: str = "transport"):
    """Show one bar for the ``num_sweeps`` sweeps run inside this context.

    Args:
        num_sweeps: sweeps the bar counts (more can be announced with
            [`add_sweeps`][numpyro_transport.progress_bar.add_sweeps]).
        max_lambda: Λ, the end of every sweep's path (progress within a sweep is
            log(1 + λ)/log(1 + Λ)).
        desc: the bar's label.
    """
    state = dict(scale=1.0 / math.log1p(max_lambda), done=0, num_sweeps=num_sweeps)
    state["bar"] = tqdm(total=num_sweeps, desc=desc, unit="sweep", bar_format=_FORMAT)
    _active.update(state)
    try:
        yield
    finally:
        _active["bar"].close()
        _active.clear()


_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total} sweeps [{elapsed}{postfix}]"


def update(lam, done):
    """Host callback: move the active bar to λ within the current sweep.

    Does nothing when no bar is open.

    Args:
        lam: the λ reached in the current sweep.
        done: whether the sweep has ended (the bar then moves on to the next sweep).
    """
    if not _active:
        return
    progress = _active["bar"]
    within = 1.0 if bool(done) else min(1.0, _active["scale"] * math.log1p(float(lam)))
    progress.n = _active["done"] + within
    progress.set_postfix_str(f"λ={float(lam):.3g}", refresh=False)
    progress.refresh()
    if bool(done):
        _active["done"] += 1


def add_sweeps(num: int):
    """Announce ``num`` more sweeps than the bar was opened with.

    Args:
        num: the number of sweeps to add to the active bar's total (none open: nothing).
    """
    if _active:
        _active["bar"].total += num
        _active["bar"].refresh()


def status(message: str):
    """Print one line of progress to stderr (above any open bar).

    Args:
        message: what the run is doing, e.g. ``"AST: setting up the model"``.
    """
    tqdm.write(message, file=sys.stderr)
