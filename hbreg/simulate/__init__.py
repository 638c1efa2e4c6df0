"""`hbreg simulate`: fit data simulated from known parameters and report the recovery.

config (schema and checks) -> generate (data and truth from a seed) -> executors (the
worker, a local process pool or Dask, the run directory) -> recovery (truth, recovery,
coverage, files) -> plots and render (figures, terminal and markdown).
"""

from hbreg.simulate.config import SimulationConfig, fit_config, load_simulation, parse_simulation
from hbreg.simulate.executors import run_simulation
from hbreg.simulate.generate import SimulatedData, draw_priors, generate_data, replicate_seeds
from hbreg.simulate.render import render_recovery

__all__ = [
    "SimulatedData",
    "SimulationConfig",
    "draw_priors",
    "fit_config",
    "generate_data",
    "load_simulation",
    "parse_simulation",
    "render_recovery",
    "replicate_seeds",
    "run_simulation",
]
