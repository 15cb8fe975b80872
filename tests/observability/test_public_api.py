"""The observability namespace exports exactly what it documents."""

from __future__ import annotations

import caxton.observability as observability


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in observability.__all__:
        obj = getattr(observability, name)
        if callable(obj):
            assert obj.__doc__, name


def test_export_list_has_no_duplicates() -> None:
    assert len(set(observability.__all__)) == len(observability.__all__)
