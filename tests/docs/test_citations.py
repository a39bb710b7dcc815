"""Every docs section the code cites exists (a cheap guard against docs and code drifting apart).

Comments, docstrings and rule files cite the project's own documents by section number:
``spec §2.4`` (a clinical doc: docs/clinical/criteria-size-pet.md or criteria-kinetics-irae.md),
``contract §9.1`` (docs/contract.md), ``interop-notes §1.4`` and ``docs/<path>.md §N`` (that file). A cited number must
be a numbered heading of the document it names. Citations of primary sources ("RECIST 1.1 §4.3.1") are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CLINICAL = ("docs/clinical/criteria-size-pet.md", "docs/clinical/criteria-kinetics-irae.md")
SCANNED_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".html", ".j2", ".txt", ".toml", ".cfg", ".ini", ".sh", ".tpl"}
SKIPPED_DIRS = {".git", ".venv", "var", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis"}

SECTION = r"§\s?(?P<section>\d+(?:\.\d+)*)"
# A document name, optionally quoted (``x.md``, `x.md`, (x.md)), then the section sign.
NAMED = re.compile(
    r"(?P<doc>(?:docs/)?(?:clinical/criteria-size-pet|clinical/criteria-kinetics-irae|criteria-size-pet"
    r"|criteria-kinetics-irae|interop-notes|contract|style)(?:\.md)?)[`'\")]*,?\s+" + SECTION
)
SPEC = re.compile(r"\bspec\s+" + SECTION, re.IGNORECASE)
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


def _doc_path(name: str) -> str:
    name = name.removeprefix("docs/").removesuffix(".md")
    if name.startswith("criteria-"):
        name = "clinical/" + name
    return f"docs/{name}.md"


def _sections(relative: str) -> set[str]:
    return set(HEADING.findall((REPO / relative).read_text(encoding="utf-8")))


def _scanned_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        if any(part in SKIPPED_DIRS for part in path.relative_to(REPO).parts):
            continue
        if path == Path(__file__).resolve():
            continue  # its own examples cite missing sections on purpose
        if path.is_file() and (path.suffix in SCANNED_SUFFIXES or path.name in ("Makefile", "Dockerfile")):
            files.append(path)
    return files


def citations() -> list[tuple[str, int, tuple[str, ...], str]]:
    """(file, line, candidate documents, section) for every citation of our docs in the repository."""
    found = []
    for path in _scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        relative = str(path.relative_to(REPO))
        for number, line in enumerate(text.splitlines(), start=1):
            for match in NAMED.finditer(line):
                found.append((relative, number, (_doc_path(match["doc"]),), match["section"].rstrip(".")))
            for match in SPEC.finditer(line):
                found.append((relative, number, CLINICAL, match["section"].rstrip(".")))
    return found


def test_the_cited_documents_exist():
    for relative in (*CLINICAL, "docs/contract.md", "docs/interop-notes.md", "docs/style.md"):
        assert (REPO / relative).is_file(), relative


def missing_sections(found: list[tuple[str, int, tuple[str, ...], str]]) -> list[str]:
    sections: dict[str, set[str]] = {}
    missing = []
    for file, line, docs, section in found:
        for doc in docs:
            sections.setdefault(doc, _sections(doc))
        if not any(section in sections[doc] for doc in docs):
            missing.append(f"{file}:{line}: {' or '.join(docs)} §{section}")
    return missing


def test_every_cited_section_is_a_heading_of_the_cited_document():
    found = citations()
    # The code base cites these documents hundreds of times: an empty list means the patterns broke.
    assert len(found) > 400
    missing = missing_sections(found)
    assert not missing, "citations of sections that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("see spec §3.2.8 and contract §9.1", [(CLINICAL, "3.2.8"), (("docs/contract.md",), "9.1")]),
        ("``docs/interop-notes.md`` §1.4", [(("docs/interop-notes.md",), "1.4")]),
        ("(docs/clinical/criteria-size-pet.md) §7", [(("docs/clinical/criteria-size-pet.md",), "7")]),
        ("interop-notes §5.1, Spec §12.", [(("docs/interop-notes.md",), "5.1"), (CLINICAL, "12")]),
        ("RECIST 1.1 §4.3.1 and issue 8 §4", []),
    ],
)
def test_citation_patterns(line, expected):
    got = [((_doc_path(m["doc"]),), m["section"].rstrip(".")) for m in NAMED.finditer(line)]
    got += [(CLINICAL, m["section"].rstrip(".")) for m in SPEC.finditer(line)]
    assert sorted(got) == sorted(expected)


def test_a_missing_section_is_reported():
    found = [("x.py", 1, ("docs/contract.md",), "99"), ("y.py", 2, CLINICAL, "3.2.9"), ("z.py", 3, CLINICAL, "3.2.8")]
    assert missing_sections(found) == [
        "x.py:1: docs/contract.md §99",
        f"y.py:2: {CLINICAL[0]} or {CLINICAL[1]} §3.2.9",
    ]
