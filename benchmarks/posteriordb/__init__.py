"""NumPyro translations of posteriordb reference posteriors (see :mod:`.models`)."""
