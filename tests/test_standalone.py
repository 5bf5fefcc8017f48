"""The project stands alone: no source, test or document cites the design notes outside the repository
(their content is in docs/), and every docs/ page the code cites exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = "shared" + "/design"  # spelled apart, so this file does not match itself
SOURCES = [p for folder in ("dcpclip", "experiments", "ablations", "benchmarks", "tests", "docs")
           for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".md", ".yaml")] + [REPO / "README.md"]


def test_nothing_cites_the_notes_outside_the_repository():
    citing = [str(p.relative_to(REPO)) for p in SOURCES if OUTSIDE in p.read_text()]
    assert not citing, f"cite docs/ instead of {OUTSIDE}: {citing}"


def test_every_cited_docs_page_exists():
    cited = {m for p in SOURCES for m in re.findall(r"docs/[\w-]+\.md", p.read_text())}
    assert cited, "the code cites docs/ pages"
    assert all((REPO / page).is_file() for page in cited), sorted(p for p in cited if not (REPO / p).is_file())
