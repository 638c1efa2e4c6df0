"""Posterior statistics: the vectorized summary and the sampler diagnostics."""
