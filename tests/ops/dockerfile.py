"""Read a Dockerfile and a .dockerignore the way the builder does, for the tests' checks.

Only what tests/ops needs: instructions with their continuation lines joined and comments
dropped, split into build stages; and whether a path of the build context survives the
.dockerignore patterns (last matching pattern wins, ``!`` re-includes, a pattern matching a
folder matches everything under it).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper-case: FROM, RUN, COPY...
    args: str  # the rest, continuation lines joined with spaces


@dataclass(slots=True)
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions in order (parser directives and comments dropped)."""
    result: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(args.split())))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return result


def stages(text: str) -> tuple[list[Instruction], list[Stage]]:
    """(the instructions before the first FROM, the build stages in order)."""
    preamble: list[Instruction] = []
    found: list[Stage] = []
    for inst in instructions(text):
        if inst.keyword == "FROM":
            words = inst.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base=words[0], name=name))
        elif found:
            found[-1].instructions.append(inst)
        else:
            preamble.append(inst)
    return preamble, found


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the context path ``path`` (relative, ``/``-separated) is left out."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = (raw[1:] if negate else raw).strip("/")
        candidates = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            verdict = not negate
    return verdict


def ignore_patterns(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def venv_tool(name: str, package: str) -> str:
    """A command a pip package of the ``test`` extra installs: next to this Python first (a
    virtual environment's bin, on PATH or not), then on PATH; the test fails without it."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name, path=os.environ.get("PATH", ""))
    if found is None:
        pytest.fail(f"{name} is not installed: pip install {package} (in the `test` extra)")
    return found
