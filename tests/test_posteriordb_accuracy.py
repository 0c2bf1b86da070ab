"""AST's posterior means on the nine posteriordb posteriors, within Monte Carlo error (slow).

Runs :func:`benchmarks.posteriordb.run.run_posterior` with the full benchmark settings, one
posterior per test:

    .venv/bin/python -m pytest -m slow tests/test_posteriordb_accuracy.py
"""

import math

import numpy as np
import pytest

from benchmarks.posteriordb.models import POSTERIORS, posteriordb_dir
from benchmarks.posteriordb.run import FLAT_PRIORS, FULL, TARGET_Z, run_posterior

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not posteriordb_dir().is_dir(),
        reason=f"posteriordb references not found at {posteriordb_dir()} (set POSTERIORDB_DIR)",
    ),
]


@pytest.mark.parametrize("name", list(POSTERIORS))
def test_ast_means_within_monte_carlo_error(name):
    """The max z-error of AST's means is below max(0.1, 4/√(min bulk ESS)): the target where
    the ESS resolves it, four Monte Carlo sds where it does not. log Z is finite where the
    prior is proper."""
    # compare_samplers() needs two samplers
    ast = run_posterior(name, FULL, samplers=("ast", "nuts"))[0]
    assert ast.z_max is not None, ast.note
    assert ast.z_max < max(TARGET_Z, 4 / math.sqrt(ast.ess_bulk_min))
    if name not in FLAT_PRIORS:
        assert np.isfinite(ast.log_z)
