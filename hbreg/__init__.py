"""hbreg: a command-line experiment runner for hierarchical Bayesian regression."""

__version__ = "0.1.0"
