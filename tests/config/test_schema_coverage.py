"""The key table covers the schema exactly, and the public names are exported."""

from __future__ import annotations

import dataclasses

import caxton.config
from caxton.config import Config
from caxton.config._fields import SECTIONS


def test_every_schema_field_has_a_parser_and_nothing_else() -> None:
    sections = [field.name for field in dataclasses.fields(Config) if field.name != "source"]
    assert list(SECTIONS) == sections
    for name, spec in SECTIONS.items():
        section_class = type(getattr(Config.embedded_default(), name))
        assert spec.cls is section_class
        assert list(spec.keys) == [field.name for field in dataclasses.fields(section_class)]


def test_public_names() -> None:
    assert len(set(caxton.config.__all__)) == len(caxton.config.__all__)
    for name in (
        "load_config",
        "config_to_dict",
        "dump_config",
        "parse_duration",
        "parse_size",
        "format_duration",
        "format_size",
    ):
        assert name in caxton.config.__all__
        assert callable(getattr(caxton.config, name))
