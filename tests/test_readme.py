"""The README's settings table is the one the tap itself reports (``--about``)."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT, TAP_EXECUTABLE


def test_readme_settings_table_matches_about_output() -> None:
    about = subprocess.run(
        [TAP_EXECUTABLE, "--about", "--format=markdown"], capture_output=True, text=True, check=True
    ).stdout
    table = (
        about.split("## Settings", 1)[1].split("A full list of supported settings", 1)[0].strip()
    )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- settings:start -->", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert section.strip() == table, "README settings table is stale: run scripts/readme-settings"


def test_readme_quick_start_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick_start.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["scripts/demo", "scripts/test"]
    for command in commands:
        assert (ROOT / command).stat().st_mode & 0o111, f"{command} is not executable"


README_MAX_LINES = 300
"""The README gets a user to a first load; the depth is in docs/ (issue 20)."""

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings (outside code blocks)."""
    anchors: set[str] = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            heading = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return anchors


def test_readme_is_at_most_300_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move depth to docs/"


def test_links_between_readme_and_docs_resolve() -> None:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for source in files:
        for target in LINK.findall(source.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (source.parent / path).resolve() if path else source
            assert linked.is_file(), f"{source.name} links to {target}: no such file"
            if anchor:
                assert anchor in _anchors(linked.read_text(encoding="utf-8")), (
                    f"{source.name} links to {target}: no such heading"
                )
            checked += 1
    assert checked >= len(files), "too few links found: the pattern is broken"
