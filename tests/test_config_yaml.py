"""jobs.yaml reading: the data is exactly PyYAML's, and every key's line comes with it.

`lib.config.reader.read_yaml` composes PyYAML's node graph once, takes the line of
every key from it (`check_nodes`) and builds the data from the same nodes. These tests
run a varied corpus through it and compare the data (types, values, key order) with
`yaml.load`'s, with libyaml and with PyYAML's pure-Python parser, and check the lines.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from lib.config import load_config, reader
from lib.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
LOADERS = [
    pytest.param(getattr(yaml, "CSafeLoader", yaml.SafeLoader), id="libyaml"),
    pytest.param(yaml.SafeLoader, id="pure-python"),
]

TRICKY_SCALARS = """\
# a comment before anything
plain: text
quoted_single: '0 6 * * *'
quoted_double: "false"
ints: [0, 1, -2, +3, 017, 0o17, 0x1F, 0b101, 1_000, 1:30, 190:20:30]
floats: [1.5, -.5, 1.0e+3, 685.230_15e+03, 190:20:30.15, .inf, -.Inf, .NaN, 1.]
not_numbers: [1e3, 06:30, 0x, 1_, 12abc, 0.1.2, '1', "2.5", '0x1F']
booleans: [yes, No, TRUE, false, on, OFF, True]
not_booleans: [y, n, Y, N, tRUE, 'yes', "on", truely]
nulls: [~, null, Null, NULL, 'null', "~", nil, None]
empty_value:
empty_string: ''
empty_flow_mapping: {}
empty_flow_list: []
dates: [2026-01-01, 2026-01-01T06:30:00Z, 2001-12-14 21:59:43.10 -5, 2026-1-1]
literal: |
  line one
    indented
  line three
folded: >
  folded
  text

  new paragraph
keep: |+
  kept

strip: >-
  stripped
indented_literal: |2
    two extra spaces
multi line plain: this plain scalar
  goes on over
  three lines
flow: {a: 1, b: [x, {c: d}], "e f": g, h: }
nested:
  - name: first
    commands:
      - dbt seed
      - dbt run --select "tag:x"
  - [1, [2, [3, []]]]
  - - deep
    - - deeper
      - {k: v}
  -
  - ''
unicode: "héllo ☃ \\u00e9 \\U0001F600"
ключ: значение
"quoted key": 1
'single quoted key': 2
"dotted.key": 3
? explicit key
: explicit value
1: int key
2.5: float key
true: bool key
~: null key
'': empty key
dup_1: first
dup_2: second
dupmap: {a: 1, b: {deep: 2}}
other: between
dupmap_2: {c: 3}
trailing: value  # a trailing comment
url: https://example.com/a?b=c#frag
colon_in_value: "a: b"
windows_path: C:\\path\\to
escapes: "tab\\tnewline\\nquote\\" bell\\a"
single_escapes: 'it''s'
long_flow: [a,
  b, c
  ,d]
bang_in_text: hello!world
percent: 50%
"""

JOB_LIKE = """\
state_dir: state
max_parallel: 8
shutdown_grace: 2m
defaults:
  timezone: Europe/Paris
  env: {DBT_SEND_ANONYMOUS_USAGE_STATS: "false", THREADS: 4}
  commands: [dbt build]
aws:
  region: eu-west-1
  subnets:
    - subnet-1
    - subnet-2
  assign_public_ip: yes
jobs:
  nightly:
    schedule: "0 6 * * *"
    every:
    enabled: off
    timeout: 90
    catchup_grace: 1h30m
    git:
      url: file:///srv/repo.git
      ref: 2026-01-01
      subdir: 012
    commands:
      - dbt seed
      - >-
        dbt run
        --select tag:nightly
  "quoted.name": {schedule: '@daily'}
"""

# Anchors, tags, merge keys, several documents, invalid YAML: what jobs.yaml files rarely hold.
UNUSUAL = {
    "anchor_alias": "base: &b {a: 1}\nuse: *b\n",
    "merge_key": "defaults: &d {x: 1}\njob:\n  <<: *d\n  y: 2\n",
    "merge_key_bad": "job:\n  <<: 1\n",
    "explicit_str_tag": "a: !!str 123\n",
    "explicit_float_tag": "a: !!float 1\n",
    "non_specific_tag": "a: ! 123\n",
    "custom_tag": "a: !custom x\n",
    "set": "a: !!set {x, y}\n",
    "omap": "a: !!omap [{x: 1}, {y: 2}]\n",
    "binary": "a: !!binary aGVsbG8=\n",
    "tagged_mapping": "a: !!map {x: 1}\n",
    "two_documents": "a: 1\n---\nb: 2\n",
    "collection_key": "? [a, b]\n: c\n",
    "mapping_key": "? {a: 1}\n: c\n",
    "value_tag": "a: =\n",
    "value_tag_key": "=: a\n",
    "unterminated_quote": "jobs:\n  a:\n    schedule: '0 6 * * *\n    project_dir: x\n",
    "bad_indentation": "a:\n  b: 1\n c: 2\n",
    "tab_indent": "a:\n\tb: 1\n",
    "unclosed_flow": "a: [1, 2\n",
    "undefined_alias": "a: *nowhere\n",
}

# Small documents at the edges: empty, comments only, scalar and list roots.
EDGES = {
    "empty": "",
    "blank_lines": "\n\n\n",
    "comments_only": "# nothing\n   # here\n",
    "explicit_empty_document": "---\n",
    "document_end_marker": "a: 1\n...\n",
    "null_root": "~\n",
    "scalar_root": "just text\n",
    "int_root": "42\n",
    "list_root": "- a\n- {b: 1}\n- [c]\n",
    "yaml_directive": "%YAML 1.1\n---\na: 1\n",
    "deep_nesting": "a: " + "[" * 60 + "x" + "]" * 60 + "\n",
}


def typed(value: Any) -> Any:
    """`value` with every type and key order made explicit, so 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return ("dict", [(typed(key), typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [typed(item) for item in value])
    return (type(value).__name__, repr(value))  # repr: -0.0 vs 0.0, nan, tz-aware datetimes


def assert_like_pyyaml(text: str, loader_cls: type) -> dict[str, int]:
    data, lines = reader.read_nodes(text, loader_cls)
    assert typed(data) == typed(yaml.load(text, Loader=loader_cls))
    return lines


def bench_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int) -> str:
    """The file bench/scale.py generates (same code, same seed), with `jobs` jobs."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # scale.py imports its _common
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "bench" / "scale.py")
    assert spec is not None and spec.loader is not None
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    path = tmp_path / "jobs.yaml"
    scale.generate(path, tmp_path, jobs)
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("loader_cls", LOADERS)
@pytest.mark.parametrize("name", ["tricky_scalars", "job_like", "repo_jobs_yaml"])
def test_the_data_is_pyyamls(loader_cls: type, name: str) -> None:
    text = {
        "tricky_scalars": TRICKY_SCALARS,
        "job_like": JOB_LIKE,
        "repo_jobs_yaml": (REPO / "jobs.yaml").read_text(encoding="utf-8"),
    }[name]
    assert_like_pyyaml(text, loader_cls)


@pytest.mark.parametrize("loader_cls", LOADERS)
def test_the_data_is_pyyamls_on_the_bench_file(
    loader_cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = bench_file(tmp_path, monkeypatch, 600)
    lines = assert_like_pyyaml(text, loader_cls)
    data = yaml.load(text, Loader=loader_cls)
    # Every job and every key of every job has its line, and the line holds that key.
    file_lines = text.splitlines()
    for name, job in data["jobs"].items():
        for key in job:
            line = file_lines[lines[f"jobs.{name}.{key}"] - 1]
            assert line.lstrip().startswith((f"{key}:", f"- {key}:")), (name, key, line)


@pytest.mark.parametrize("loader_cls", LOADERS)
@pytest.mark.parametrize("name", sorted(EDGES))
def test_the_edges_read_as_pyyaml_reads_them(loader_cls: type, name: str) -> None:
    assert_like_pyyaml(EDGES[name], loader_cls)


@pytest.mark.parametrize("loader_cls", LOADERS)
def test_every_key_and_list_item_has_its_line(loader_cls: type) -> None:
    data, lines = reader.read_nodes(TRICKY_SCALARS, loader_cls)
    assert data["ints"] == [0, 1, -2, 3, 15, "0o17", 31, 5, 1000, 90, 685230]
    assert data["not_booleans"] == ["y", "n", "Y", "N", "tRUE", "yes", "on", "truely"]
    assert data["nulls"] == [None, None, None, None, "null", "~", "nil", "None"]
    assert data["dupmap"] == {"a": 1, "b": {"deep": 2}} and data["dupmap_2"] == {"c": 3}
    assert (lines["dupmap"], lines["dupmap.b.deep"], lines["dupmap_2.c"]) == (61, 61, 63)
    assert lines["nested[0].commands[1]"] == 40
    assert lines["plain"] == 2 and lines["literal"] == 16


@pytest.mark.parametrize("name", sorted(UNUSUAL))
def test_unusual_yaml_reads_as_pyyaml_reads_it_or_is_one_located_error(name: str) -> None:
    text = UNUSUAL[name]
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        expected = typed(yaml.load(text, Loader=loader_cls))
    except yaml.YAMLError:
        with pytest.raises(ConfigError) as raised:
            reader.read_yaml(text, "jobs.yaml")
        [issue] = raised.value.issues
        assert "invalid YAML" in str(issue) or "invalid value" in str(issue), str(issue)
        return
    except (ValueError, TypeError):  # a scalar PyYAML cannot build: located by its line
        with pytest.raises(ConfigError):
            reader.read_yaml(text, "jobs.yaml")
        return
    data, _ = reader.read_yaml(text, "jobs.yaml")
    assert typed(data) == expected


def test_invalid_yaml_is_reported_by_pyyaml_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(textwrap.dedent(UNUSUAL["unterminated_quote"]))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    [issue] = raised.value.issues
    assert str(issue).startswith(f"{path}:") and "invalid YAML: found unexpected end of stream" in str(issue)
