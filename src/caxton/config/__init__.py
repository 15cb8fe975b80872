"""Configuration: the seed's `production.toml` schema, typed, validated and frozen.

`load_config` reads a file (or ``CAXTON_CONFIG_PATH``, or the embedded default) into a frozen
`Config`; `dump_config` and `config_to_dict` render one back with secrets masked. The unit
helpers read and write durations (``"200ms"``, ``"1h30m"``) and binary sizes (``"512MB"``).
docs/configuration.md lists every key.
"""

from caxton.config._dump import config_to_dict, dump_config
from caxton.config._fields import parse_address
from caxton.config._units import format_duration, format_size, parse_duration, parse_size
from caxton.config.loader import load_config
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
    "config_to_dict",
    "dump_config",
    "format_duration",
    "format_size",
    "load_config",
    "parse_address",
    "parse_duration",
    "parse_size",
]
