"""The docs a newcomer reads point only at things a clone has.

README.md, docs/*.md and the READMEs under bench/ and src/: every relative Markdown link and
image resolves to a file or folder of the repository (outside fenced code blocks, where a link
is not a link); in README.md and docs/*.md every repository path written in inline code
(`src/...`, `bench/...`, ...) exists; and no text, code blocks included, names a path of the
project's private workspace (`../shared/...`, `shared/tools/...`, `/work/...`): commands must
run from a clean clone.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "bench").rglob("README.md"),
               *(ROOT / "src").rglob("README.md")])
# where a path in inline code is one of ours (a bench README also quotes upstream repositories' paths)
MAIN_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# the workspace's paths; SITES.md's `/shared/suanli` is an example cluster mount, not one of them
WORKSPACE = re.compile(r"(?<![\w/.-])\.\./shared/|(?<![\w./-])shared/(?:tools|data|scenarios|design|notes)/|"
                       r"(?<![\w.-])/work/")
TOP = ("src/", "docs/", "bench/", "scripts/", "tests/", "examples/", "web/", "deploy/", ".ci/")
# generated or ignored: written by a command the docs give, or by a build, not shipped in a clone
NOT_SHIPPED = ("src/suanli/service/static/", "web/node_modules/", "web/src/geo/")


def prose_lines(text: str):
    """(line number, line) of the lines outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced and not line.startswith(("    ", "\t")):
            yield n, line


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target)) or target.startswith(("#", "//"))


def broken_links(doc: Path) -> list[str]:
    bad = []
    for n, line in prose_lines(doc.read_text(encoding="utf-8")):
        code_free = INLINE_CODE.sub("", line)
        targets = LINK.findall(code_free) + REF_DEF.findall(code_free)
        for target in targets:
            if is_external(target):
                continue
            path = target.split("#", 1)[0]
            if not path:
                continue
            resolved = (doc.parent / path).resolve()
            if not resolved.is_relative_to(ROOT):
                bad.append(f"{doc.relative_to(ROOT)}:{n}: link {target!r} leaves the repository")
            elif not resolved.exists():
                bad.append(f"{doc.relative_to(ROOT)}:{n}: link {target!r} -> {resolved.relative_to(ROOT)} "
                           "does not exist")
    return bad


def missing_code_paths(doc: Path) -> list[str]:
    """Inline-code spans that are plainly a repository path (no spaces, globs or placeholders)."""
    bad = []
    for n, line in prose_lines(doc.read_text(encoding="utf-8")):
        for span in INLINE_CODE.findall(line):
            path = span.split(":", 1)[0].rstrip(".,;")
            if not path.startswith(TOP) or path.startswith(NOT_SHIPPED):
                continue
            if re.search(r"[\s*?{}<>\[\]$|]|\.\.\.|…", path):
                continue                                   # a pattern, a command, a placeholder
            if not (ROOT / path).exists():
                bad.append(f"{doc.relative_to(ROOT)}:{n}: `{span}` names {path}, which the repository lacks")
    return bad


def workspace_paths(doc: Path) -> list[str]:
    return [f"{doc.relative_to(ROOT)}:{n}: {line.strip()[:160]}"
            for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1) if WORKSPACE.search(line)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_of_the_repository(doc):
    assert broken_links(doc) == []


@pytest.mark.parametrize("doc", MAIN_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_in_inline_code_exists(doc):
    assert missing_code_paths(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doc_names_a_path_outside_the_repository(doc):
    assert workspace_paths(doc) == []


def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch):
    """A broken link, a link out of the repository, a missing code path and a workspace path are each
    reported; a link inside a code block, an external link and SITES.md's example mount are not."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "THERE.md").write_text("# there\n", encoding="utf-8")
    doc = tmp_path / "docs" / "X.md"
    doc.write_text(
        "[ok](THERE.md#there) [gone](GONE.md) [out](../../elsewhere.md) [web](https://example.org/a.md)\n"
        "![img](img/none.png) run `docs/THERE.md` and `docs/NOPE.md`; `src/suanli/static/` is missing too\n"
        "```\n[in a block](NOWHERE.md)\n```\n"
        "see ../shared/tools/checker.py, and --workdir /shared/suanli is an example\n",
        encoding="utf-8")
    links = broken_links(doc)
    assert [x.split(": link ")[1].split(" ")[0] for x in links] == ["'GONE.md'", "'../../elsewhere.md'",
                                                                     "'img/none.png'"]
    assert "leaves the repository" in links[1]
    code = missing_code_paths(doc)
    assert len(code) == 2 and "docs/NOPE.md" in code[0] and "src/suanli/static/" in code[1]
    ws = workspace_paths(doc)
    assert len(ws) == 1 and ws[0].startswith("docs/X.md:6:")
