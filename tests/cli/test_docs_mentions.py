"""What a newcomer reads matches the repository: options documented, links and references real."""

from __future__ import annotations

import re
from pathlib import Path

import click

from caxton.cli.serve import serve

ROOT = Path(__file__).resolve().parents[2]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {
        _slug(line.lstrip("#"))
        for line in doc.read_text().splitlines()
        if line.startswith("#") and not line.startswith("#!")
    }


def test_every_serve_option_is_documented() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for param in serve.params:
        if isinstance(param, click.Option):
            for flag in [*param.opts, *param.secondary_opts]:
                if flag.startswith("--"):
                    assert flag in operations, flag
    assert "--bind" in readme
    assert "--examples" in readme


def test_the_guide_topic_table_links_to_real_places() -> None:
    operations = ROOT / "docs" / "operations.md"
    text = operations.read_text()
    table = text.split("### The deployment guide, topic by topic", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\(([^)]+)\)", table)
    assert len(links) >= 15
    for link in links:
        target, _, anchor = link.partition("#")
        path = operations if not target else (operations.parent / target).resolve()
        assert path.exists(), link
        if anchor:
            assert anchor in _anchors(path), link


def test_no_reference_to_a_design_document_that_is_not_in_the_repository() -> None:
    assert not (ROOT / "DESIGN.md").exists()
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "sdk").rglob("*.h")]
    # The sources' comments too (their contracts are in docs/*.md); tests/cleanroom says on
    # purpose that it was written from the external design document only.
    files += [p for p in (ROOT / "src" / "caxton").rglob("*") if p.suffix in (".py", ".c", ".pyi")]
    files += [ROOT / "tests" / "fixtures" / "README.md"]
    for path in files:
        assert "DESIGN.md" not in path.read_text(), path
