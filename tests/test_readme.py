"""The README's settings table is the one the tap itself reports (``--about``)."""

from __future__ import annotations

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
