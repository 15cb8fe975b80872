"""Configuration: the seed's `production.toml` schema, typed, validated and frozen."""

from caxton.config.schema import (
    DEFAULT_DATA_DIR,
    Address,
    Config,
    CoordinationConfig,
    NetworkingConfig,
    ObservabilityConfig,
    RuntimeConfig,
    Secret,
    SecurityConfig,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "Address",
    "Config",
    "CoordinationConfig",
    "NetworkingConfig",
    "ObservabilityConfig",
    "RuntimeConfig",
    "Secret",
    "SecurityConfig",
]
