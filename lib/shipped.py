"""Where the files that ship beside the code are: the run script, the image's sources.

From a clone they are in the repository (`docker/`). From an installed package
(`pip install .`, `pipx install .`) there is no repository: the wheel carries a copy
of `docker/run_commands.sh` inside the package (`lib/_shipped/`, see pyproject.toml),
which is all the local runner needs. Building the job image (`bootstrap --only
image`) needs the whole source tree and says so when there is none.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The repository a clone runs from: lib/ sits at its top level (the user's layout).
SOURCE_TREE = PACKAGE_DIR.parent


def run_commands_script() -> Path:
    """docker/run_commands.sh of the clone, else the copy the installed package carries."""
    in_tree = SOURCE_TREE / "docker" / "run_commands.sh"
    if in_tree.is_file():
        return in_tree
    return PACKAGE_DIR / "_shipped" / "run_commands.sh"


def source_tree() -> Path | None:
    """The clone's root (what `<engine> build` gets as context), or None when installed."""
    return SOURCE_TREE if (SOURCE_TREE / "docker" / "Dockerfile").is_file() else None
