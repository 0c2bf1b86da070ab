import jax
import numpyro
import pytest

numpyro.set_host_device_count(2)  # before JAX starts: chain_method="parallel" gets 2 devices
numpyro.set_platform("cpu")


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory, worker_id):
    """A persistent compilation cache shared by the test workers: tests that compile the same
    program (the same model and options in several MCMC runs) compile it once. NumPyro re-lowers
    its sampling loop on every ``run()``; the cache turns those repeats into lookups."""
    root = tmp_path_factory.getbasetemp()
    root = root if worker_id == "master" else root.parent
    jax.config.update("jax_compilation_cache_dir", str(root / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    yield
    jax.config.update("jax_compilation_cache_dir", None)
