"""The repository explains itself: every file it cites exists, every section it cites in `docs/`
is a heading there, and nothing cites documents kept outside the repository.

Cited files are paths under the repository's top folders (`docs/<name>.md`, `bench/<name>.py`,
`experiments/<name>/...`, `scripts/<name>`, `tests/<name>`), with `*` globs and `{a,b}`
alternatives allowed and `<name>` placeholders skipped. A cited section is a quoted heading right
after a `docs/` path, as in docs/design.md, 'Layers'. Outside documents are cited by a section
sign, by the names of the specification and design files the project started from, or by a path
into the shared folder beside the repository.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("llava15", "bench", "scripts", "tests", "experiments", "docs", "README.md")
TEXT_SUFFIXES = frozenset({".py", ".md", ".sh", ".txt", ".html", ".c", ".toml"})

# A path under a top folder of the repository, not the tail of a longer path (`llava/eval/...`).
REFERENCE = re.compile(r"(?<![\w./-])((?:docs|bench|experiments|scripts|tests)/(?:[\w.*<>-]|/|\{[\w.,-]*\})+)")
# Paths of the official LLaVA repository that its scripts are known by; they are not ours.
OFFICIAL = re.compile(r"scripts/(?:v1_5/|convert_\w+\.py|zero\d)")
# One quoted section after a docs/ path (or after the previous section), possibly wrapped once.
SECTION = re.compile(r"(?:[,;]|\s|#|\band\b)*'([^'\n]+(?:\n[\s#]*[^'\n]+)?)'")
OUTSIDE = re.compile(r"\u00a7|\bDESIGN\.md|(?<![\w/.-])(?:llava-1\.5|benchmarks|anchors)\.md|(?:\.\.|/work)/shared\b")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)


def scanned_files(root: Path = ROOT) -> list[Path]:
    """The text files of the scanned folders (and README.md) under `root`."""
    files = []
    for name in SCANNED:
        path = root / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        files += [p for p in candidates if p.is_file() and p.suffix in TEXT_SUFFIXES
                  and "__pycache__" not in p.parts]
    return files


def expand(path: str) -> list[str]:
    """`a/{b,c}.py` -> `a/b.py`, `a/c.py`."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def headings(doc: Path) -> set[str]:
    return {h.strip() for h in HEADING.findall(doc.read_text(encoding="utf-8"))}


def missing_target(path: str, root: Path) -> str | None:
    """Why `path` (as cited) names nothing in `root`, or None when it does."""
    for one in expand(path):
        found = list(root.glob(one)) if "*" in one else [root / one] if (root / one).exists() else []
        if not found:
            return f"cites {path}, which is not in the repository"
    return None


def problems_in(file: Path, root: Path = ROOT) -> list[str]:
    """Each bad citation in `file` as 'file:line: why'."""
    text = file.read_text(encoding="utf-8", errors="replace")
    where = file.relative_to(root) if file.is_relative_to(root) else file

    def at(offset: int) -> str:
        return f"{where}:{text.count(chr(10), 0, offset) + 1}"

    problems = [f"{at(m.start())}: cites a document outside the repository ({m.group(0)!r})"
                for m in OUTSIDE.finditer(text)]
    for m in REFERENCE.finditer(text):
        path = m.group(1).rstrip(".-")
        if "<" in path or ">" in path or OFFICIAL.match(path):
            continue
        why = missing_target(path, root)
        if why:
            problems.append(f"{at(m.start())}: {why}")
        elif path.startswith("docs/") and path.endswith(".md"):
            known, rest = headings(root / path), text[m.start() + len(path):]
            while section := SECTION.match(rest):
                name = re.sub(r"\s*\n[\s#]*", " ", section.group(1)).strip()
                if name not in known:
                    problems.append(f"{at(m.start())}: {path} has no section {name!r}")
                rest = rest[section.end():]
    return problems


def test_every_citation_resolves_inside_the_repository():
    files = scanned_files()
    assert ROOT / "docs" / "design.md" in files and Path(__file__) in files  # the scan sees them
    problems = [p for f in files for p in problems_in(f)]
    assert not problems, "\n".join(problems)


def test_bad_citations_are_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real.md").write_text("# Real\n\n## Kept section\n\n### Wrapped heading\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "speed.py").write_text("")
    sign = "\u00a7"
    good = ["see " + "docs/" + "real.md, 'Kept section' and 'Wrapped\n    # heading'.",
            "bench/" + "speed.py and bench/" + "{speed,speed}.py and bench/" + "*.py",
            "bench/" + "<name>.py is a placeholder; " + "scripts/" + "v1_5/pretrain.sh is official"]
    bad = ["see " + "docs/" + "gone.md",
           "docs/" + "real.md, 'Lost section'",
           "experiments/" + "nothing/NOTES.md",
           "bench/" + "*.sh",
           "the rule of spec " + sign + "3.4",
           "see " + "DESIGN" + ".md",
           "see " + "benchmarks" + ".md for the rules",
           "read " + ".." + "/shared/spec/x.md"]
    source = tmp_path / "tests" / "cites.py"
    source.parent.mkdir()
    source.write_text("\n".join(f"# {line}" for line in good + bad) + "\n")
    problems = problems_in(source, tmp_path)
    good_lines = sum(line.count("\n") + 1 for line in good)
    assert all(int(p.split(":")[1]) > good_lines for p in problems), problems
    flagged = {int(p.split(":")[1]) for p in problems}
    assert flagged == set(range(good_lines + 1, good_lines + len(bad) + 1)), problems
