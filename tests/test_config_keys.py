"""The key table is the one description of jobs.yaml: the README tables, the JSON Schema,
the dataclasses' defaults and the parser all agree with it."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lib.config import keys, parse_config, reference, schema
from lib.errors import ConfigError
from lib.models import AwsSettings, DockerSettings, Job, ProxyHeaders, Retention, WebSettings
from tests.dbt_helpers import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / "jobs.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    document = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


def test_readme_tables_are_the_ones_the_key_table_renders() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert reference.update(readme) == readme, "README.md's jobs.yaml tables are stale: run `make docs`"
    for section in reference.TABLES:  # and every key of every table is in it
        for key in section.keys:
            assert f"| `{key.name}` |" in readme, (section.title, key.name)


def test_a_table_without_its_markers_is_an_error_not_a_silent_skip() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    without = re.sub(
        r"<!-- BEGIN generated: Job keys.*?<!-- END generated: Job keys -->", "", readme, flags=re.S
    )
    with pytest.raises(ValueError, match="no generated block for Job keys"):
        reference.update(without)


def test_the_committed_schema_is_the_one_scheduler_py_schema_prints() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scheduler.py"), "schema"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == schema.render()
    assert SCHEMA_FILE.read_text(encoding="utf-8") == done.stdout, (
        "jobs.schema.json is stale: run `make docs`"
    )
    assert json.loads(done.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_example_jobs_yaml_names_the_schema_and_passes_it(
    validator: jsonschema.Draft202012Validator,
) -> None:
    text = (REPO_ROOT / "jobs.yaml").read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first == "# yaml-language-server: $schema=./jobs.schema.json"
    assert list(validator.iter_errors(yaml.safe_load(text))) == []


def _minimal(project: Path) -> dict[str, Any]:
    return {"jobs": {"a": {"every": "5 minutes", "project_dir": str(project)}}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "dbt_project.yml").write_text("name: p\n")
    return folder


def both_refuse(data: dict[str, Any], validator: jsonschema.Draft202012Validator, tmp_path: Path) -> None:
    assert list(validator.iter_errors(data)), f"the schema accepts {data}"
    with pytest.raises(ConfigError):
        parse_config(data, base_dir=tmp_path)


@pytest.mark.parametrize(
    "where",
    [
        "top",
        "job",
        "defaults",
        "aws",
        "docker",
        "retention",
        "job.retention",
        "job.git",
        "job.commands[0]",
        "web",
        "web.proxy_headers",
    ],
)
def test_an_unknown_key_is_refused_by_the_schema_and_the_parser(
    where: str, validator: jsonschema.Draft202012Validator, project: Path, tmp_path: Path
) -> None:
    data = _minimal(project)
    job = data["jobs"]["a"]
    targets = {
        "top": data,
        "job": job,
        "defaults": data.setdefault("defaults", {}),
        "aws": data.setdefault("aws", {"region": "eu-west-1"}),
        "docker": data.setdefault("docker", {}),
        "retention": data.setdefault("retention", {}),
        "job.retention": job.setdefault("retention", {}),
        "job.git": {},
        "job.commands[0]": {},
        "web": data.setdefault("web", {"proxy_headers": {}}),
        "web.proxy_headers": data.setdefault("web", {"proxy_headers": {}})["proxy_headers"],
    }
    if where == "job.git":
        del job["project_dir"]
        job["git"] = targets["job.git"] = {"url": "file:///srv/repo.git"}
    if where == "job.commands[0]":
        job["commands"] = [targets["job.commands[0]"]]
        targets["job.commands[0]"]["run"] = "dbt build"
    assert list(validator.iter_errors(data)) == [], "the base document is valid"
    parse_config(data, base_dir=tmp_path)  # and so the parser says
    targets[where]["no_such_key"] = 1
    both_refuse(data, validator, tmp_path)


LEAVES = [
    (section, key)
    for section in (
        keys.TOP_LEVEL,
        keys.JOB,
        keys.AWS,
        keys.DOCKER,
        keys.RETENTION,
        keys.WEB,
        keys.PROXY_HEADERS,
    )
    for key in section.keys
    if key.name not in ("jobs", "defaults", "description")  # description takes any scalar
]


@pytest.mark.parametrize(
    "section,key", LEAVES, ids=lambda item: getattr(item, "name", getattr(item, "title", ""))
)
def test_a_wrong_type_is_refused_by_the_schema_and_the_parser(
    section: keys.Section,
    key: keys.Key,
    validator: jsonschema.Draft202012Validator,
    project: Path,
    tmp_path: Path,
) -> None:
    data = _minimal(project)
    wrong = [[1, {"a": None}]]  # a list holding a list: no key of jobs.yaml takes that
    place = {
        keys.TOP_LEVEL.title: data,
        keys.JOB.title: data["jobs"]["a"],
        keys.AWS.title: data.setdefault("aws", {"region": "eu-west-1"}),
        keys.DOCKER.title: data.setdefault("docker", {}),
        keys.RETENTION.title: data.setdefault("retention", {}),
        keys.WEB.title: data.setdefault("web", {}),
        keys.PROXY_HEADERS.title: data.setdefault("web", {}).setdefault("proxy_headers", {}),
    }[section.title]
    place[key.name] = wrong
    both_refuse(data, validator, tmp_path)


def test_the_defaults_in_the_table_are_the_dataclasses_defaults(project: Path, tmp_path: Path) -> None:
    """The table's defaults, parsed, are what the models default to, so neither can drift."""
    config = parse_config(
        {**_minimal(project), "aws": {"region": "eu-west-1"}, "docker": {}, "web": {"proxy_headers": {}}},
        base_dir=tmp_path,
    )
    assert config.aws == AwsSettings(region="eu-west-1")
    assert config.web == WebSettings()
    assert config.docker == DockerSettings()
    assert config.retention == Retention()
    job = config.jobs["a"]
    model_defaults = {
        f.name: f.default for f in dataclasses.fields(Job) if f.default is not dataclasses.MISSING
    }
    for name, default in model_defaults.items():
        if name in ("allow_failure", "project_dir"):  # derived; written by the minimal job
            continue
        assert getattr(job, name) == default, name
    assert job.env == {} and job.timezone.key == "UTC" and job.retention == Retention()


def test_every_setting_of_the_models_is_a_key_of_the_table() -> None:
    for model, section in (
        (AwsSettings, keys.AWS),
        (DockerSettings, keys.DOCKER),
        (Retention, keys.RETENTION),
        (WebSettings, keys.WEB),
        (ProxyHeaders, keys.PROXY_HEADERS),
    ):
        assert {f.name for f in dataclasses.fields(model)} == set(section.names), model.__name__
    # A Job's fields come from job keys, except what the parser derives from several.
    derived = {"name", "trigger", "allow_failure"}
    assert {f.name for f in dataclasses.fields(Job)} - derived <= set(keys.JOB.names)


def test_every_key_has_a_doc_and_a_released_or_upcoming_version() -> None:
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = set(re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.M))
    from lib import __version__

    versions.add(__version__.removesuffix(".dev0"))
    for section in (*keys.SECTIONS, keys.GIT, keys.COMMAND):
        for key in section.keys:
            assert key.doc.strip() and "\n" not in key.doc, key.name
            assert key.since in versions, (key.name, key.since)
