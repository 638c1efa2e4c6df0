"""The error hierarchy: raised where a problem is found, turned into exit codes by the CLI."""

__all__ = ["HbregError", "ConfigError", "DataError", "SamplingError", "OutputError"]


class HbregError(Exception):
    """Base class for errors a user can act on; `exit_code` is what the CLI returns."""

    exit_code = 2


class ConfigError(HbregError):
    """The experiment config is invalid (unknown key, wrong type, bad prior)."""


class DataError(HbregError):
    """The data cannot be used (missing column, NaNs, non-numeric predictor)."""


class SamplingError(HbregError):
    """The sampler failed (compilation, initialisation or a crash mid-run)."""

    exit_code = 3


class OutputError(HbregError):
    """The run directory cannot be written (read-only root, a file in the way)."""

    exit_code = 3
