"""The repository's Markdown stays inside the repository, and its pins agree with the files.

A newcomer reads README.md and CONTRIBUTING.md in a fresh clone: every link there must
lead to something in that clone, and nothing may point at the machine the docs were
written on (a sibling `../shared` folder, an absolute /work path).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.dbt_helpers import REPO_ROOT

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_UP_PATH = re.compile(r"(?<![\w.])(?:\.\./)+[\w.\-/]*")
# Paths of the machine the docs were written on, and the house notes that used to live
# beside the repository instead of in it.
_FOREIGN = ("/work/", "/root/", "../shared", "STYLE.md", "NOTES.md")
REQUIRED = ("README.md", "CONTRIBUTING.md")


def markdown_files() -> list[Path]:
    """The repository's own Markdown: not under hidden folders (.venv, .git), run state
    or dbt's output, which are never descended into."""
    skip = {"state", "node_modules", "target", "dbt_packages", "logs"}
    found = []
    for folder, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip]
        found += [Path(folder) / name for name in files if name.endswith(".md")]
    return sorted(found)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def problems(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """What in the Markdown file `path` points outside `root` or at nothing."""
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(root)
    found = [f"{where}: mentions {word!r}" for word in _FOREIGN if word in text]
    anchors = {slug(h) for h in _HEADING.findall(_FENCE.sub("", text))}
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        if not file_part:
            if anchor not in anchors:
                found.append(f"{where}: link to #{anchor}: no such heading")
            continue
        resolved = (path.parent / file_part).resolve()
        if not resolved.is_relative_to(root):
            found.append(f"{where}: link to {target} leaves the repository")
        elif not resolved.exists():
            found.append(f"{where}: link to {target}: {resolved.relative_to(root)} does not exist")
    for up in _UP_PATH.findall(text):
        if not (path.parent / up).resolve().is_relative_to(root):
            found.append(f"{where}: path {up} leaves the repository")
    return found


def test_readme_and_contributing_exist_and_readme_links_contributing() -> None:
    for name in REQUIRED:
        assert (REPO_ROOT / name).is_file(), name
    assert "](CONTRIBUTING.md)" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_markdown_points_only_inside_the_repository(path: Path) -> None:
    assert problems(path) == []


def test_the_checker_catches_what_it_is_for(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    repo = repo.resolve()
    (repo / "README.md").write_text("# Readme\n")
    doc = repo / "GUIDE.md"
    doc.write_text(
        "# Title\n\nSee ../shared/STYLE.md, [the notes](../../NOTES.md), [gone](docs/gone.md),\n"
        "[ok](README.md), [here](#title), [nowhere](#missing), [web](https://example.com/x).\n",
        encoding="utf-8",
    )
    found = problems(doc, repo)
    name = doc.name
    assert found == [
        f"{name}: mentions '../shared'",
        f"{name}: mentions 'STYLE.md'",
        f"{name}: mentions 'NOTES.md'",
        f"{name}: link to ../../NOTES.md leaves the repository",
        f"{name}: link to docs/gone.md: docs/gone.md does not exist",
        f"{name}: link to #missing: no such heading",
        f"{name}: path ../shared/STYLE.md leaves the repository",
        f"{name}: path ../../NOTES.md leaves the repository",
    ]


def _pin(text: str, package: str) -> str:
    match = re.search(rf"^{re.escape(package)}(~=[\d.]+)\s*$", text, re.MULTILINE)
    assert match, f"no {package}~=… line"
    return match.group(1)


def test_the_readmes_adapter_pins_are_the_ones_the_image_and_the_venv_install() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    image = (REPO_ROOT / "docker" / "requirements.txt").read_text(encoding="utf-8")
    venv = (REPO_ROOT / "requirements-dbt.txt").read_text(encoding="utf-8")
    assert f'"dbt-snowflake{_pin(image, "dbt-snowflake")}"' in readme
    assert _pin(image, "dbt-core") == _pin(venv, "dbt-core") == "~=1.11.0"
    assert "pip install -r requirements-dbt.txt" in readme  # installed with dbt-core's pin
    # The Dockerfile installs exactly that file into the image's dbt venv.
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY docker/requirements.txt" in dockerfile and "pip install --no-cache-dir -r" in dockerfile


def unnamed_modules(doc: str, root: Path = REPO_ROOT) -> list[str]:
    """The modules under root/lib that `doc` does not name by their path (`lib/runners/ecs.py`);
    a package's `__init__.py` is named by its folder (`lib/runners/`)."""
    missing = []
    for path in sorted((root / "lib").rglob("*.py")):
        where = path.relative_to(root).as_posix()
        name = f"{path.parent.relative_to(root).as_posix()}/" if path.name == "__init__.py" else where
        if name not in doc and where not in doc:
            missing.append(where)
    return missing


def test_every_module_in_lib_is_named_in_the_architecture_doc() -> None:
    doc = (REPO_ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert unnamed_modules(doc) == [], "add a row for each to 'Where each concern lives'"


def test_the_module_check_catches_a_module_the_doc_leaves_out(tmp_path: Path) -> None:
    for module in ("lib/__init__.py", "lib/app.py", "lib/runners/__init__.py", "lib/runners/new.py"):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("")
    doc = "| `lib/` | … |\n| `lib/app.py` | … |\n| `lib/runners/` | … |\n"
    assert unnamed_modules(doc, tmp_path) == ["lib/runners/new.py"]
    assert unnamed_modules(doc + "`lib/runners/new.py`", tmp_path) == []


def undocumented_commands(readme: str) -> list[str]:
    """The subcommands of `scheduler.py` that have no row in the README's CLI reference."""
    from lib.cli import build_parser

    section = readme.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    return [name for name in commands if f"| `{name}" not in section]


def test_every_subcommand_has_a_row_in_the_cli_reference() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert undocumented_commands(readme) == [], "add a row to the README's CLI reference"
    assert "token" in undocumented_commands(readme.replace("| `token", "| token"))
