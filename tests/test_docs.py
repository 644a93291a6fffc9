"""The README is the front door (300 lines at most); every link of the README, docs/, CHANGELOG
and the role READMEs reaches a file that exists, and a #fragment a heading of it. In a git checkout
the file must also be one git keeps: a link to an ignored, unadded file (bench/results/ is ignored)
resolves here and breaks on a clean clone."""

import functools
import re
import subprocess

import pytest

from webstack_testlib import ROOT

PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *ROOT.glob("docs/*.md"), *ROOT.glob("roles/*/README.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@functools.cache
def ignored_untracked():
    """Files here that a clean clone will not have (none when this is no git checkout)."""
    out = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z"],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    return {(ROOT / name).resolve() for name in out.stdout.split("\0") if name} if out.returncode == 0 else set()


def anchors(page):
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in page.read_text().splitlines() if line.startswith("#")}


def test_the_readme_is_300_lines_at_most():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for page in ROOT.glob("docs/*.md"):
        assert f"(docs/{page.name})" in readme, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # an URL: not checked here (no network)
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists() or {resolved, *resolved.parents} & ignored_untracked():
            broken.append(target)
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(target)
    assert not broken, broken
