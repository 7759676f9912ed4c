"""The repository explains itself: every reference from code, recipes, tests and docs to a doc (file and heading),
a benchmark, an experiment, a recipe or a test resolves inside the repository, and nothing cites a design document
that is not in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("data", "eval", "serve", "train", "vtg", "recipes", "tests", "docs", "bench")
SUFFIXES = {".py", ".yaml", ".toml", ".md", ".sh", ".js", ".html"}
# a repository path as code and docs cite it: docs/grammar.md#reasoning-and-answer, bench/rollouts/README.md,
# tests/test_grammar.py::test_slug..., experiments/learning/qwen3/
REF = re.compile(r"(?<![\w./-])((?:docs|bench|experiments|recipes|tests)/[\w./-]*[\w/])(#[\w-]+|::\w+)?(?![\w{])")
LINK = re.compile(r"\]\(([^)\s]+)\)")  # markdown links


def _files(*more: str) -> list[Path]:
    out = [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / ".ci" / "run", ROOT / "run"]
    for top in SOURCES + more:
        out += [p for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix in SUFFIXES]
    return [p for p in out if p.exists() and "__pycache__" not in p.parts]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    heads = [line.lstrip("#").strip() for line in md.read_text().splitlines() if re.match(r"#{1,6} ", line)]
    return {slug(h) for h in heads}


def _problem(path: str, fragment: str | None) -> str | None:
    target = ROOT / path
    if not target.exists():
        return f"{path}: no such file or folder"
    if fragment and fragment.startswith("#") and target.suffix == ".md" and fragment[1:] not in anchors(target):
        return f"{path}{fragment}: no such heading in {path}"
    if fragment and fragment.startswith("::") and not re.search(rf"def {fragment[2:]}\b", target.read_text()):
        return f"{path}{fragment}: no such test"
    return None


def test_slug_follows_github():
    assert slug("Public data sets: `vtg data convert`") == "public-data-sets-vtg-data-convert"
    assert slug("Rewards (GRPO)") == "rewards-grpo"


def test_every_repository_reference_resolves():
    problems = []
    for f in _files():
        text = f.read_text(errors="replace")
        for m in REF.finditer(text):
            path, fragment = m.group(1).rstrip("."), m.group(2)
            if "*" in path or "<" in path or path.endswith("/..."):
                continue
            bad = _problem(path, fragment)
            if bad:
                problems.append(f"{f.relative_to(ROOT)}: {bad}")
    assert not problems, "\n".join(problems)


def test_markdown_links_resolve():
    problems = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "bench").rglob("README.md"))]:
        for link in LINK.findall(md.read_text()):
            if "://" in link or link.startswith("mailto:"):
                continue
            path, _, heading = link.partition("#")
            target = (md.parent / path).resolve() if path else md
            if not target.exists():
                problems.append(f"{md.relative_to(ROOT)}: link {link}: no such file")
            elif heading and target.suffix == ".md" and heading not in anchors(target):
                problems.append(f"{md.relative_to(ROOT)}: link {link}: no such heading")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["DESIGN.md", "§"])
def test_nothing_cites_an_outside_design_document(name):
    hits = [
        str(f.relative_to(ROOT))
        for f in _files("experiments")
        if f != Path(__file__) and name in f.read_text(errors="replace")
    ]
    assert not hits, f"{name} cited in {hits}"
