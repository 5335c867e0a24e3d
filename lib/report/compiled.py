"""The compiled SQL of a run's warned and failed nodes, kept in its run folder.

dbt writes compiled SQL under its target path, which lives in the run's `work/`
folder, and a successful run deletes `work/` (lib/runners/local.py); a container's
or an ECS task's target path is gone with the container. run-results v6 carries the
SQL of every compiled node as `compiled_code`, and the run folder holds each
command's run_results, so the SQL is written from there, for every runner, to
`<run_dir>/compiled/<package>/<file>` — dbt's own layout under target/compiled/.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from lib.dbt_results import PROBLEM_STATUSES, numbered_artifacts
from lib.models import NodeResult

COMPILED_DIR = "compiled"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _safe_parts(*pieces: str) -> list[str]:
    """Path components without anything that could climb out of the folder."""
    parts: list[str] = []
    for piece in pieces:
        parts += [p for p in PurePosixPath(piece.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    return parts


def compiled_relpath(unique_id: str, manifest: Mapping[str, Any] | None) -> PurePosixPath:
    """Where dbt puts a node's compiled SQL under target/compiled/: the package, then
    the file it is defined in; a test defined in a .yml file gets its own file in a
    folder named after the .yml (`shop/models/_staging.yml/not_null_x.sql`). Without
    the manifest entry: `<resource type>/<unique_id>.sql`."""
    node = None
    for section in ("nodes", "unit_tests"):
        candidate = ((manifest or {}).get(section) or {}).get(unique_id)
        if isinstance(candidate, Mapping):
            node = candidate
            break
    package = node.get("package_name") if node else None
    original = node.get("original_file_path") if node else None
    if isinstance(package, str) and isinstance(original, str) and original:
        parts = _safe_parts(package, original)
        if not original.endswith(".sql"):
            own = node.get("path") if isinstance(node.get("path"), str) else f"{node.get('name')}.sql"
            parts += _safe_parts(PurePosixPath(own).name)
        if parts:
            return PurePosixPath(*parts)
    kind = unique_id.split(".", 1)[0] or "node"
    return PurePosixPath(*_safe_parts(kind, f"{unique_id}.sql"))


def keep_compiled_sql(run_dir: Path, nodes: Sequence[NodeResult]) -> tuple[NodeResult, ...]:
    """Write each warned/failed/errored node's compiled SQL to `<run_dir>/compiled/…`
    and return the nodes with `compiled_path` set (absolute) for those written.

    The SQL is `compiled_code` from the run_results of the command that ran the
    node. A node that never compiled (a compilation error, a source) has none and is
    left as it is. A node two commands warned about is written once, by the later.
    Never raises for missing or malformed artifacts; an unwritable folder raises OSError.
    """
    run_dir = Path(run_dir)
    wanted = {(n.command, n.unique_id) for n in nodes if n.status in PROBLEM_STATUSES}
    if not wanted:
        return tuple(nodes)
    manifest = _read_json(run_dir / "manifest.json")
    manifest = manifest if isinstance(manifest, dict) else None
    kept: dict[tuple[int | None, str], str] = {}
    for command, path in numbered_artifacts(run_dir, "run_results"):
        data = _read_json(path)
        results = data.get("results") if isinstance(data, dict) else None
        for raw in results if isinstance(results, list) else ():
            if not isinstance(raw, Mapping):
                continue
            unique_id, code = raw.get("unique_id"), raw.get("compiled_code")
            if (command, unique_id) not in wanted or not isinstance(code, str) or not code.strip():
                continue
            target = run_dir / COMPILED_DIR / compiled_relpath(str(unique_id), manifest)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code.strip("\n") + "\n", encoding="utf-8")
            kept[(command, str(unique_id))] = str(target)
    return tuple(
        replace(n, compiled_path=kept[(n.command, n.unique_id)]) if (n.command, n.unique_id) in kept else n
        for n in nodes
    )
