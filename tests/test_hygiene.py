"""Rules about the text of the code: what a reader can follow, and one place per formatting rule.

* No comment, docstring or document cites an issue number: the tracker is not part of the
  repository, so "see issue 3, item 8" says nothing to a reader; name the document or the
  behaviour instead.
* RFC 3339 timestamps are formatted in one place, `caxton.wire.timestamps` (messages, the API
  and log records must agree on the format docs/api.md promises).
"""

from __future__ import annotations

import re
from pathlib import Path

#: The checkout these tests belong to (not where caxton is installed from: after a plain
#: `pip install .` that is site-packages, with no tests, bench or docs next to it).
ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "caxton"
#: Where prose lives next to the code.
TEXT_DIRS = ("src", "tests", "bench", "docs")
#: "issue 3", "Issue #12", "issue 10's" (this file, which shows examples, is not checked).
ISSUE_NUMBER = re.compile(r"\bissue\s*#?\s*\d", re.IGNORECASE)
#: A hand-written RFC 3339 format: strftime with a ``T`` between date and time, or isoformat.
RFC3339_BY_HAND = re.compile(r"%Y-%m-%dT|(?<!from)isoformat\(")
FORMATTER = SOURCE / "wire" / "timestamps.py"


def _text_files() -> list[Path]:
    files: list[Path] = []
    for top in TEXT_DIRS:
        for pattern in ("*.py", "*.md", "*.yml", "*.c", "*.h"):
            files.extend(p for p in (ROOT / top).rglob(pattern) if ".venv" not in p.parts)
    assert ROOT / "tests" / "test_layers.py" in files  # the checkout, not an installed copy
    return sorted(set(files) - {Path(__file__).resolve()})


def test_no_comment_or_document_cites_an_issue_number() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _text_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ISSUE_NUMBER.search(line)
    ]
    assert not found, "cite the document or the behaviour, not the tracker:\n" + "\n".join(found)


def test_rfc3339_is_formatted_in_one_place() -> None:
    found = [
        str(path.relative_to(ROOT))
        for path in sorted(SOURCE.rglob("*.py"))
        if path != FORMATTER and RFC3339_BY_HAND.search(path.read_text(encoding="utf-8"))
    ]
    assert not found, f"format timestamps with caxton.wire.timestamps: {found}"
    assert RFC3339_BY_HAND.search(FORMATTER.read_text(encoding="utf-8"))


def test_the_patterns_see_what_they_are_for() -> None:
    assert ISSUE_NUMBER.search("The agent metrics of Issue 3, item 8")
    assert ISSUE_NUMBER.search("see issue #12")
    assert not ISSUE_NUMBER.search("a token issued at 12:00")
    assert RFC3339_BY_HAND.search('stamp.isoformat(timespec="milliseconds")')
    assert not RFC3339_BY_HAND.search("datetime.fromisoformat(text)")
