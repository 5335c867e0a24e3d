"""The JSON Schema of jobs.yaml (draft 2020-12), built from the key table.

`scheduler.py schema` prints it; jobs.schema.json is the same document, committed so
that a YAML language server (VS Code's YAML extension and others) validates and
completes jobs.yaml from the `# yaml-language-server: $schema=…` line at its top.

The schema is the editor's view: it knows each key, its type, its allowed values and
its default, and refuses unknown keys. The parser stays the authority on what only it
can check (a cron expression's fields, a path that must exist, `schedule` *or* `every`
once `defaults:` are merged).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keys.py builds its nested schemas with `section_object` at import
    from lib.config.keys import Key, Section

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://github.com/dbt-scheduler/dbt-scheduler/jobs.schema.json"


def key_schema(key: Key, nullable: bool) -> dict[str, Any]:
    """A property: the key's value schema, its doc and default, and `null` when it means the default."""
    value: dict[str, Any] = dict(key.schema)
    if nullable and not key.required:
        value = {"anyOf": [value, {"type": "null"}]}
    value["description"] = key.doc
    value["markdownDescription"] = key.doc
    if key.default is not None:
        value["default"] = key.default
    return value


def section_object(
    section: Section, required: tuple[str, ...] = (), skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A mapping that holds `section`'s keys and nothing else."""
    properties = {key.name: key_schema(key, section.nullable) for key in section.keys if key.name not in skip}
    result: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        result["required"] = list(required)
    return result


def jobs_yaml_schema() -> dict[str, Any]:
    """The whole document: the top level, with `defaults:` taking the job keys it takes."""
    from lib.config.keys import JOB, NOT_IN_DEFAULTS, TOP_LEVEL

    document = section_object(TOP_LEVEL, required=tuple(k.name for k in TOP_LEVEL.keys if k.required))
    defaults = document["properties"]["defaults"]
    defaults["anyOf"][0] = section_object(JOB, skip=tuple(NOT_IN_DEFAULTS))
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "dbt-scheduler jobs.yaml",
        "description": "The jobs dbt-scheduler runs: see README.md, 'jobs.yaml reference'.",
        **document,
    }


def render() -> str:
    """The schema as jobs.schema.json holds it: keys in the table's order, two-space indent."""
    return json.dumps(jobs_yaml_schema(), indent=2, ensure_ascii=False) + "\n"
