"""Which keys of a deployment's configuration depart from deploy/production.toml without
saying why: each changed, added or dropped key must sit under a ``# MARKER:`` comment (in the
run of non-blank lines above it), and a dropped key must be named in such a comment."""

from __future__ import annotations

import re
import tomllib

from tests.support import ROOT

SHIPPED = ROOT / "deploy" / "production.toml"


def uncommented_changes(text: str, marker: str) -> list[str]:
    """The ``section.key`` changes of ``text`` against deploy/production.toml that no
    ``# MARKER:`` comment explains."""
    ours, shipped = tomllib.loads(text), tomllib.loads(SHIPPED.read_text())
    lines = text.splitlines()
    comments = "\n".join(line for line in lines if line.lstrip().startswith("#"))
    missing: list[str] = []
    for section in sorted(shipped.keys() | ours.keys()):
        mine, theirs = ours.get(section, {}), shipped.get(section, {})
        for key in sorted(mine.keys() | theirs.keys()):
            if mine.get(key) == theirs.get(key):
                continue
            if key not in mine:
                if not re.search(rf"{marker}:[^\n]*(\n#[^\n]*)*\b{key}\b", comments):
                    missing.append(f"{section}.{key} (dropped)")
                continue
            at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
            block = []
            for line in reversed(lines[:at]):
                if not line.strip():
                    break
                block.append(line)
            if not any(f"# {marker}:" in line for line in block):
                missing.append(f"{section}.{key}")
    return missing
