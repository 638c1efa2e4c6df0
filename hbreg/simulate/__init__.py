"""`hbreg simulate`: fit data simulated from known parameters and report the recovery."""

from hbreg.simulate._all import load_simulation, render_recovery, run_simulation

__all__ = ["load_simulation", "render_recovery", "run_simulation"]
