"""Experiment configs: the schema, strict loading with `--set`, and priors."""

from hbreg.config.load import (
    apply_overrides,
    dump_config,
    load_config,
    parse_config,
    read_yaml_mapping,
    validate_mapping,
)
from hbreg.config.schema import (
    PLOT_KINDS,
    Config,
    DataConfig,
    DiagnosticsConfig,
    ModelConfig,
    OutputConfig,
    PriorsConfig,
    SamplerConfig,
    coefficient_names,
    correlation_prior,
    family_parameters,
    parameter_names,
    prior_for,
    varying_names,
)

__all__ = [
    "PLOT_KINDS",
    "Config",
    "DataConfig",
    "DiagnosticsConfig",
    "ModelConfig",
    "OutputConfig",
    "PriorsConfig",
    "SamplerConfig",
    "apply_overrides",
    "coefficient_names",
    "correlation_prior",
    "dump_config",
    "family_parameters",
    "load_config",
    "parameter_names",
    "parse_config",
    "prior_for",
    "read_yaml_mapping",
    "validate_mapping",
    "varying_names",
]
