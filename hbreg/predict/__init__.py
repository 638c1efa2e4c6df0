"""`hbreg predict`: new rows in, predictions out, from a fit's run directory only."""

from hbreg.predict.run import PredictionResult, predict

__all__ = ["PredictionResult", "predict"]
