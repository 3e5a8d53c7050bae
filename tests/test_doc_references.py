"""The course never points a reader to a file it does not have: no notes outside the repository (DESIGN.md,
../shared), and every relative Markdown link in the book pages and notebooks resolves to a file in the repository."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "notebooks").glob("*.ipynb")) + [ROOT / "README.md"]
SOURCES = sorted((ROOT / "tdd_lite").rglob("*.py")) + sorted((ROOT / "tools").glob("*.py"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", PAGES + SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_to_notes_outside_the_repository(path):
    text = _text(path)
    for outside in ("DESIGN.md", "../shared"):
        assert outside not in text, f"{path.relative_to(ROOT)} refers to {outside}, which readers do not have"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    missing = []
    for target in LINK.findall(_text(path)):
        if re.match(r"^[a-z]+:", target) or target.startswith("/"):
            continue  # a URL or a site-absolute path, not a file of the repository
        f = (path.parent / target).resolve()
        # the book links pages by their built name (.html) or their source (.md/.ipynb)
        candidates = [f, f.with_suffix(".md"), f.with_suffix(".ipynb")]
        if not any(c.exists() for c in candidates) and "exercises/" not in target:
            missing.append(target)
    assert not missing, f"{path.relative_to(ROOT)} links to files the repository does not have: {missing}"
