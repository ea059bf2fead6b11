"""README.md and docs/: the size limit, the paper pages, and every relative link and anchor resolves."""

from __future__ import annotations

import re

from conftest import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PAPERS = ("asl_par", "eot_patch", "semanticadv", "jma", "pat")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_readme_is_short_and_links_the_docs():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for page in ("docs/extending.md", "docs/outputs.md", *(f"docs/papers/{p}.md" for p in PAPERS)):
        assert (REPO / page).is_file(), page
        assert f"]({page})" in text, f"README.md does not link {page}"


def test_relative_links_and_anchors_resolve():
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):  # http(s):, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
