import os

import jax
import numpyro
import pytest

numpyro.set_host_device_count(2)  # before JAX starts: chain_method="parallel" gets 2 devices
numpyro.set_platform("cpu")
# The suite is compile-bound: skipping LLVM's expensive optimization passes cuts XLA's CPU compile
# time by about a tenth here, and the small test programs run no slower.
os.environ["XLA_FLAGS"] += " --xla_llvm_disable_expensive_passes=true"


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory, worker_id):
    """A persistent compilation cache shared by the test workers: tests that compile the same
    program (the same model and options in several MCMC runs) compile it once. NumPyro re-lowers
    its sampling loop on every ``run()``; the cache turns those repeats into lookups. Every
    program is cached, however small: the eager operations of NumPyro's model set-up recompile
    (new closures) in every test, about a hundred per MCMC run."""
    root = tmp_path_factory.getbasetemp()
    root = root if worker_id == "master" else root.parent
    jax.config.update("jax_compilation_cache_dir", str(root / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    jax.config.update("jax_compilation_cache_dir", None)
