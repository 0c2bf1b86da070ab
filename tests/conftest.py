import jax

jax.config.update("jax_platform_name", "cpu")
