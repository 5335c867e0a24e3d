"""jobs.yaml → a validated `Config`.

`load_config(path)` reads the file; `parse_config(data, …)` is pure and collects
*every* problem with its location (`jobs.yaml:14 jobs.nightly.schedule: …`) before
raising one `ConfigError`, so a user fixes the whole file in one pass.

Merging rule for `defaults:`: a key the job does not write is taken from
`defaults`; a key the job writes wins, even when it writes `false` or `0`; a job
writing `null` falls back to the built-in default. `env` maps are merged key by
key (the job's keys win) so shared variables live in one place. `retention` is not
a `defaults` key: the top-level `retention:` is every job's default, and a job's
own `retention:` overrides it key by key.

A bad value is reported once however many jobs inherit it; a wrong type is a
located error like any other, and one bad key never hides another (a job with a
bad zone still gets its cron expression checked). `commands:` lines are checked
with the grammar docker/run_commands.sh runs them with (lib/command_grammar.py).
"""

from __future__ import annotations

import difflib
import gc
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from lib.command_grammar import CommandSyntaxError, check_command
from lib.durations import parse_duration
from lib.errors import ConfigError, ConfigIssue, quoted
from lib.models import AwsSettings, DockerSettings, GitSource, Job, Retention, Trigger
from lib.secrets import has_url_credential, is_secret_name, url_credential
from lib.triggers import parse_cron, parse_every
from lib.yaml_limits import MAX_DEPTH, budget_issue, check_nodes, duplicate_key, read_text

RUNNERS = ("local", "docker", "ecs")
OVERLAP_POLICIES = ("skip", "allow")
CATCHUP_POLICIES = ("none", "latest")
TOP_LEVEL_KEYS = (
    "defaults",
    "state_dir",
    "max_parallel",
    "shutdown_grace",
    "retention",
    "aws",
    "docker",
    "jobs",
)
JOB_KEYS = (
    "description",
    "schedule",
    "every",
    "timezone",
    "runner",
    "project_dir",
    "git",
    "profiles_dir",
    "target",
    "commands",
    "env_file",
    "env",
    "timeout",
    "overlap",
    "catchup",
    "catchup_grace",
    "enabled",
    "image",
    "retention",
)
# Job keys `defaults:` does not take: each has its own top-level home.
NOT_IN_DEFAULTS = {"retention": "set `retention:` at the top level: it is every job's default already"}
COMMAND_KEYS = ("run", "allow_failure")
RETENTION_KEYS = ("keep_days", "keep_failed_work")
AWS_KEYS = tuple(f.name for f in fields(AwsSettings))
DOCKER_KEYS = tuple(f.name for f in fields(DockerSettings))
LAUNCH_TYPES = ("EC2", "FARGATE")
ENGINES = ("docker", "podman")
GIT_KEYS = ("url", "ref", "subdir")
# ECS throttles API calls per account and Region with token buckets that every caller
# shares (the console, the CLI, other tools); a task's state changes over seconds, so
# describing it more often than once a second per run only spends that budget and
# invites ThrottlingException for everyone in the account.
MIN_POLL_INTERVAL = 1.0
# Matched with fullmatch: `$` also matches before a trailing newline, and a job name
# becomes a folder name and a lock file.
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# C0 controls and DEL: no path, name, image or command has a use for them, and a NUL
# makes every system call that meets it raise ("embedded null byte").
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Upper bounds on whole numbers, so a typo of a few extra digits is an error here and not
# an OverflowError in timedelta, SQLite or a thread pool later.
MAX_PARALLEL = 1024
MAX_KEEP_DAYS = 36_500  # a century
MAX_COUNT = 2**31 - 1  # ECS cpu/memory, log retention days, kept failed runs: an INT32 field
MAX_START_RETRIES = 100
DEFAULT_STATE_DIR = "state"
DEFAULT_MAX_PARALLEL = 4
DEFAULT_SHUTDOWN_GRACE = 30.0


@dataclass(frozen=True)
class Config:
    """The whole validated file."""

    path: Path | None
    state_dir: Path
    jobs: dict[str, Job]
    max_parallel: int = DEFAULT_MAX_PARALLEL
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE  # seconds a running job gets on SIGTERM
    # The top-level `retention:`: what prune applies to runs of jobs no longer in the
    # file; each Job carries its own effective policy in `Job.retention`.
    retention: Retention = field(default_factory=Retention)
    aws: AwsSettings | None = None
    docker: DockerSettings = field(default_factory=DockerSettings)
    raw_jobs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def job(self, name: str) -> Job:
        """The job called `name`; an unknown name raises with a did-you-mean."""
        from lib.errors import UnknownJobError

        if name in self.jobs:
            return self.jobs[name]
        hint = _did_you_mean(name, self.jobs)
        known = ", ".join(sorted(self.jobs)) or "none"
        where = self.path.name if self.path else "jobs.yaml"
        raise UnknownJobError(f"{where}: no job named '{name}'{hint} (jobs defined: {known})")


# --------------------------------------------------------------------------- loading


def load_config(path: Path | str) -> Config:
    """Read and validate a jobs.yaml; raises ConfigError naming the file and line."""
    path = Path(path)
    try:
        text = read_text(path)  # refuses files past the size budget and bytes that are not UTF-8
    except FileNotFoundError:
        raise ConfigError(
            [ConfigIssue("", "file not found: pass --config PATH or create it (see README)", file=str(path))]
        ) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue("", f"cannot read file: {exc}", file=str(path))]) from None
    # A load allocates a few hundred thousand objects and keeps most of them, so each
    # cyclic-GC pass during it walks an ever larger heap, for nothing: loading makes no
    # cycles. Paused, the collector meets them once, after the load. On the 10,000-job
    # bench file that took load_config from 4.24 s to 2.97 s with PyYAML's constructor,
    # and load + first fire times from 1.18 s to 1.08 s with `_read_events` (medians).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        data, lines = _parse_yaml(text, str(path))
        return parse_config(data, base_dir=path.resolve().parent, source=str(path), lines=lines)
    finally:
        if was_enabled:
            gc.enable()


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """YAML data plus a map of dotted key path → 1-based line, for error messages.

    The event reader (`_read_events`) handles what jobs.yaml files are made of. On
    anything else (anchors, aliases, tags, merge keys, several documents, invalid YAML)
    it gives up and PyYAML's loader (`_read_nodes`) reads the file, so data, errors and
    messages are always PyYAML's. Both refuse duplicate keys (naming both lines); the
    node reader also refuses documents past the budgets of lib/yaml_limits.py (aliases
    expanding past MAX_NODES, nesting past MAX_DEPTH) before building any object.
    """
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster on 10k jobs
    try:
        return _read_events(text, loader_cls, source)
    except ConfigError:  # duplicate keys, deep nesting: the node reader would find them again
        raise
    except Exception:  # whatever it does not handle, invalid YAML and deep recursion included
        pass
    try:
        return _read_nodes(text, loader_cls, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([ConfigIssue("", f"invalid YAML: {problem}", line=line, file=source)]) from None


def _read_nodes(text: str, loader_cls: type, source: str = "jobs.yaml") -> tuple[Any, dict[str, int]]:
    """What `_parse_yaml` returns, read by PyYAML's composer and constructor: the reference.

    The composed node graph (aliases are shared nodes, so it is small even for an alias
    bomb) goes through `check_nodes` before the constructor runs: budgets, duplicate keys
    and the line of each key, every node visited once.
    """
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        lines = check_nodes(node, source) if node is not None else {}
        try:
            data = loader.construct_document(node) if node is not None else None
        except (ValueError, OverflowError, TypeError) as exc:
            # SafeConstructor lets int()/float()/datetime() errors through without a mark
            # (`2026-13-45`, `!!int abc`, 5,000 digits): find the scalar that raised it.
            raise ConfigError([_bad_scalar(node, exc, source)]) from None
    finally:
        loader.dispose()
    return data, lines


def _bad_scalar(root: yaml.Node, exc: Exception, source: str) -> ConfigIssue:
    """The issue for the first scalar the constructor cannot build, with its line."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            constructor = _CONSTRUCTOR.yaml_constructors.get(node.tag)
            if node.tag in _CONSTRUCTED_TAGS and constructor is not None:
                try:
                    constructor(_CONSTRUCTOR, node)
                except (ValueError, OverflowError, TypeError) as error:
                    line = node.start_mark.line + 1
                    return ConfigIssue(
                        "", f"invalid value {_shown(node.value)}: {error}", line=line, file=source
                    )
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(item for pair in reversed(node.value) for item in reversed(pair))
    return ConfigIssue("", f"invalid value: {exc}", file=source)


class _Unsupported(Exception):
    """The fast reader met something it leaves to PyYAML's loader."""


_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
# Built by PyYAML's own constructor functions (on a bare ScalarNode), so `0o17`, `1_000`,
# `0x1F`, `.inf` or `2026-01-01` come out exactly as SafeLoader makes them.
_CONSTRUCTED_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _read_events(text: str, loader_cls: type, source: str = "jobs.yaml") -> tuple[Any, dict[str, int]]:
    """What `_parse_yaml` returns, built straight from libyaml's parse events.

    On the 10,000-job bench file `_read_nodes` takes ~2.2 s, ~1.1 s with the GC paused
    (PyYAML's node graph, its Python resolver and constructor, `_index_lines`), of which
    libyaml's parser is ~0.25 s. Building dicts and lists straight from the events,
    recording each key's line on the way, takes ~0.35 s in all.
    Plain scalars go through the loader's own implicit-resolver table (YAML 1.1 as
    SafeLoader reads it: `yes`/`off` are booleans, `~` and an empty value are null, `012`
    is octal) and SafeConstructor's own functions, so the data equals `yaml.safe_load`'s.
    Raises `_Unsupported` on anchors, aliases, explicit tags, merge keys (`<<`), keys
    that are collections, other implicit tags and streams that are not one document, and
    ConfigError listing every duplicate key (two keys of one mapping with equal values).
    """
    if loader_cls.yaml_path_resolvers:
        raise _Unsupported("path resolvers")
    implicit = loader_cls.yaml_implicit_resolvers
    anywhere = implicit.get(None, [])
    constructors = loader_cls.yaml_constructors
    resolved: dict[str, Any] = {}  # plain scalar text → value: keys and values repeat a lot
    lines: dict[str, int] = {}
    duplicates: list[ConfigIssue] = []
    depth = 0  # collections open around the current event
    scalar_event, mapping_end, sequence_end = yaml.ScalarEvent, yaml.MappingEndEvent, yaml.SequenceEndEvent

    def resolve(value: str) -> Any:
        """A plain scalar's value, as Resolver.resolve and SafeConstructor make it."""
        tag = _STR_TAG
        for candidate, regexp in implicit.get(value[0] if value else "", []) + anywhere:
            if regexp.match(value):
                tag = candidate
                break
        if tag == _STR_TAG:
            result: Any = value
        elif tag == _NULL_TAG:
            result = None
        elif tag == _BOOL_TAG:
            result = _CONSTRUCTOR.bool_values[value.lower()]
        elif tag in _CONSTRUCTED_TAGS:
            result = constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, value))
        else:  # merge (`<<`), value (`=`) or a resolver someone added
            raise _Unsupported(tag)
        resolved[value] = result
        return result

    def node(event: Any, path: str) -> Any:
        """The value of the node `event` starts; a collection's contents are read here."""
        if event.anchor is not None or event.tag is not None:  # an alias has an anchor too
            raise _Unsupported("anchor, alias or tag")
        kind = type(event)
        if kind is scalar_event:
            value = event.value
            if not event.implicit[0]:  # quoted or block scalar: the string as written
                return value
            found = resolved.get(value, _MISSING)
            return resolve(value) if found is _MISSING else found
        if kind is not yaml.MappingStartEvent and kind is not yaml.SequenceStartEvent:
            raise _Unsupported(kind.__name__)
        nonlocal depth
        depth += 1
        if depth > MAX_DEPTH:  # as check_nodes refuses it: the same file, the same answer
            line = event.start_mark.line + 1
            raise budget_issue(source, f"nesting deeper than {MAX_DEPTH} levels", line, "nesting")
        try:
            return mapping(path) if kind is yaml.MappingStartEvent else sequence(path)
        finally:
            depth -= 1

    def mapping(prefix: str) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        # Keys as written, with their type: as `check_nodes` compares them (`1` and `true`
        # are equal dict keys, yet no one wrote the same key twice).
        seen: dict[tuple[type, str], int] = {}
        while True:
            event = get_event()
            if type(event) is not scalar_event:
                if type(event) is mapping_end:
                    return result
                raise _Unsupported("a key that is not a scalar")
            raw = event.value  # as in `check_nodes`, the key's text as written names it
            path = f"{prefix}.{raw}" if prefix else raw
            line = event.start_mark.line + 1
            key = node(event, path)
            name = (key.__class__, raw)
            if name in seen:
                duplicates.append(duplicate_key(path, seen[name], line, source))
            else:
                seen[name] = lines[path] = line
            event = get_event()
            # Most values are plain untagged scalars: look them up here, without `node`.
            if (
                type(event) is scalar_event
                and event.implicit[0]
                and event.anchor is None
                and event.tag is None
            ):
                value = resolved.get(event.value, _MISSING)
                result[key] = resolve(event.value) if value is _MISSING else value
            else:
                result[key] = node(event, path)

    def sequence(prefix: str) -> list[Any]:
        result: list[Any] = []
        while True:
            event = get_event()
            if type(event) is sequence_end:
                return result
            path = f"{prefix}[{len(result)}]"
            lines[path] = event.start_mark.line + 1
            result.append(node(event, path))

    loader = loader_cls(text)
    try:
        get_event = loader.get_event
        if type(get_event()) is not yaml.StreamStartEvent:
            raise _Unsupported("no stream")
        event = get_event()
        if type(event) is yaml.StreamEndEvent:  # nothing but comments and blank lines
            return None, lines
        if type(event) is not yaml.DocumentStartEvent:
            raise _Unsupported("no document")
        data = node(get_event(), "")
        if type(get_event()) is not yaml.DocumentEndEvent or type(get_event()) is not yaml.StreamEndEvent:
            raise _Unsupported("more than one document")
    finally:
        loader.dispose()
    if duplicates:
        raise ConfigError(duplicates)
    return data, lines


_MISSING = object()


# --------------------------------------------------------------------------- parsing


class _Issues:
    """Collects problems with their line numbers, each once.

    A bad value in `defaults:` is met once per job that inherits it, at the same
    path with the same message: it is one problem with one fix, so one issue.
    """

    def __init__(self, source: str | None, lines: Mapping[str, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[ConfigIssue] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, path: str, message: str) -> None:
        if (path, message) in self._seen:
            return
        self._seen.add((path, message))
        line = self.lines.get(path)
        probe = path
        while line is None and "." in probe:  # fall back to the nearest enclosing key
            probe = probe.rsplit(".", 1)[0]
            line = self.lines.get(probe)
        self.items.append(ConfigIssue(path, message, line=line, file=self.source))


class _Memo:
    """Answers that many jobs share, worked out once per `parse_config` call.

    Ten thousand jobs mostly repeat a few dozen values: one project_dir, a handful of
    zones, durations, commands and schedules. Checking each distinct value once
    (`shlex.split` ~20 µs, path resolution and `is_file()` 10-45 µs, `parse_duration`,
    `ZoneInfo`, trigger parsing, env names) took `parse_config` on the bench file from
    ~1.2 s to ~0.4 s. The memo lives for one call only, so a reload sees files that
    appeared or vanished since. A failure is kept as its message (a `str`) and reported
    again for every job that repeats the value, each at its own path.
    """

    __slots__ = ("base_dir", "commands", "durations", "env_names", "files", "paths", "triggers", "zones")

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.paths: dict[str, Path] = {}
        self.files: dict[tuple[Path, str], bool] = {}
        self.zones: dict[str, ZoneInfo | str] = {}
        self.triggers: dict[tuple[str, str, ZoneInfo], Trigger | str] = {}
        self.durations: dict[tuple[type, Any], float | str] = {}
        self.commands: dict[str, tuple[str | None, str]] = {}  # (command, "") or (None, message)
        self.env_names: set[str] = set()  # names that matched ENV_NAME

    def path(self, value: str) -> Path:
        path = self.paths.get(value)
        if path is None:
            path = self.paths[value] = _resolve_path(value, self.base_dir)
        return path

    def is_file(self, directory: Path, name: str = "") -> bool:
        """Whether `directory / name` (or `directory` itself when `name` is empty) is a file."""
        key = (directory, name)
        found = self.files.get(key)
        if found is None:
            found = self.files[key] = (directory / name if name else directory).is_file()
        return found


def parse_config(
    data: Any,
    base_dir: Path,
    source: str | None = None,
    lines: Mapping[str, int] | None = None,
) -> Config:
    """Validate plain data (as read from YAML) into a Config, or raise ConfigError with every issue."""
    issues = _Issues(source, lines or {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        issues.add("", "the top level must be a mapping with a `jobs:` key")
        raise ConfigError(issues.items)
    _check_unknown(data, TOP_LEVEL_KEYS, "", issues)
    # As in a job, a key written as null takes its built-in default.
    data = {key: value for key, value in data.items() if value is not None}

    state_dir_value = data.get("state_dir", DEFAULT_STATE_DIR)
    if not isinstance(state_dir_value, str) or not state_dir_value:
        issues.add("state_dir", f"must be a path (string), got {_shown(state_dir_value)}")
        state_dir_value = DEFAULT_STATE_DIR
    elif "\0" in state_dir_value:
        issues.add("state_dir", _NUL_IN_PATH)
        state_dir_value = DEFAULT_STATE_DIR
    state_dir = _resolve_path(state_dir_value, base_dir)
    max_parallel = data.get("max_parallel", DEFAULT_MAX_PARALLEL)
    if (
        isinstance(max_parallel, bool)
        or not isinstance(max_parallel, int)
        or not 1 <= max_parallel <= MAX_PARALLEL
    ):
        issues.add(
            "max_parallel", f"must be a whole number from 1 to {MAX_PARALLEL}, got {_shown(max_parallel)}"
        )
        max_parallel = DEFAULT_MAX_PARALLEL
    memo = _Memo(base_dir)
    shutdown_grace = _duration_or_issue(
        data.get("shutdown_grace", DEFAULT_SHUTDOWN_GRACE), "shutdown_grace", issues, memo, allow_zero=True
    )
    retention = _retention(data.get("retention"), Retention(), "retention", issues)

    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        issues.add("defaults", f"must be a mapping of job keys, got {defaults!r}")
        defaults = {}
    _check_unknown(defaults, JOB_KEYS, "defaults", issues)
    for key, hint in NOT_IN_DEFAULTS.items():
        if key in defaults:
            issues.add(f"defaults.{key}", hint)
    defaults = {key: value for key, value in defaults.items() if key not in NOT_IN_DEFAULTS}

    aws = _aws(data.get("aws"), memo, issues) if data.get("aws") is not None else None
    docker = _docker(data.get("docker"), issues) if data.get("docker") is not None else DockerSettings()

    raw_jobs = data.get("jobs")
    jobs: dict[str, Job] = {}
    if raw_jobs is None:
        issues.add("jobs", "missing: add a `jobs:` mapping of job name → settings (see README)")
        raw_jobs = {}
    elif not isinstance(raw_jobs, dict):
        issues.add("jobs", f"must be a mapping of job name → settings, got {raw_jobs!r}")
        raw_jobs = {}
    names: set[str] = set()
    for name, raw in raw_jobs.items():
        if name is None or isinstance(name, bool):  # `~:` or `yes:` would become "None", "True"
            issues.add(f"jobs.{name}", f"{name!r} is not a job name: quote it, or use a name such as nightly")
            continue
        if str(name) in names:  # `1:` and `'1':` are two keys, but one job folder and one lock
            issues.add(f"jobs.{name}", "two jobs have this name (once as a number, once as text): rename one")
            continue
        names.add(str(name))
        job = _parse_job(str(name), raw, defaults, retention, memo, issues)
        if job is not None:
            _check_runner_needs(job, aws, issues)
            jobs[job.name] = job

    if issues.items:
        raise ConfigError(issues.items)
    return Config(
        path=Path(source) if source else None,
        state_dir=state_dir,
        jobs=jobs,
        max_parallel=max_parallel,
        shutdown_grace=shutdown_grace if shutdown_grace is not None else DEFAULT_SHUTDOWN_GRACE,
        retention=retention,
        aws=aws,
        docker=docker,
        raw_jobs=raw_jobs,
    )


def _parse_job(
    name: str, raw: Any, defaults: dict, retention: Retention, memo: _Memo, issues: _Issues
) -> Job | None:
    where = f"jobs.{name}"
    before = len(issues.items)
    if not JOB_NAME.fullmatch(name):
        issues.add(where, "job names use letters, digits, '_', '-' and '.', up to 64 characters")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        issues.add(where, "must be a mapping of settings (schedule, project_dir, commands…)")
        return None
    _check_unknown(raw, JOB_KEYS, where, issues)
    merged = _merge(defaults, raw)

    def key_path(key: str) -> str:
        # Point at the job's own line when it wrote the key, else at defaults.
        return f"{where}.{key}" if key in raw or key not in defaults else f"defaults.{key}"

    tz = _timezone(merged.get("timezone", "UTC"), key_path("timezone"), issues, memo)
    trigger = _trigger(merged, tz, where, key_path, issues, memo)

    runner = merged.get("runner", "local")
    if runner not in RUNNERS:
        issues.add(key_path("runner"), f"{runner!r} is not a runner: use one of {', '.join(RUNNERS)}")

    project_dir = _optional_path(merged, "project_dir", memo, key_path, issues)
    git = _git(merged.get("git"), key_path("git"), issues)
    if project_dir is None and git is None:
        # A bad value of either is reported at its key already; this is for neither written.
        if merged.get("project_dir") is None and merged.get("git") is None:
            issues.add(where, "set `project_dir` (a local dbt project) or `git: {url: …}` to say what to run")
    elif project_dir is not None and git is not None:
        issues.add(where, "set either `project_dir` or `git`, not both")
    elif project_dir is not None and not memo.is_file(project_dir, "dbt_project.yml"):
        issues.add(
            key_path("project_dir"), f"{project_dir} has no dbt_project.yml: point it at a dbt project"
        )
    profiles_dir = _optional_path(merged, "profiles_dir", memo, key_path, issues)
    if profiles_dir is not None and git is None and not memo.is_file(profiles_dir, "profiles.yml"):
        issues.add(key_path("profiles_dir"), f"{profiles_dir} has no profiles.yml")

    target = _optional_str(merged, "target", key_path, issues)
    commands, allow_failure = _commands(
        merged.get("commands", ["dbt build"]), key_path("commands"), issues, memo
    )
    env_file = _optional_path(merged, "env_file", memo, key_path, issues)
    if env_file is not None and not memo.is_file(env_file):
        issues.add(key_path("env_file"), f"{env_file} does not exist: create it or remove `env_file`")
    env = _env(merged.get("env", {}), key_path("env"), issues, memo)

    timeout = None
    if merged.get("timeout") is not None:
        timeout = _duration_or_issue(merged["timeout"], key_path("timeout"), issues, memo)
    overlap = _choice(merged.get("overlap", "skip"), OVERLAP_POLICIES, key_path("overlap"), issues)
    catchup = _choice(merged.get("catchup", "none"), CATCHUP_POLICIES, key_path("catchup"), issues)
    catchup_grace = _duration_or_issue(
        merged.get("catchup_grace", "1h"), key_path("catchup_grace"), issues, memo
    )
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        issues.add(key_path("enabled"), f"must be true or false, got {enabled!r}")
    description = merged.get("description")
    if description is not None and not isinstance(description, str | int | float):
        issues.add(key_path("description"), f"must be a line of text, got {description!r}")
    job_retention = _retention(merged.get("retention"), retention, f"{where}.retention", issues)

    if len(issues.items) > before or trigger is None or tz is None:
        return None
    return Job(
        name=name,
        trigger=trigger,
        timezone=tz,
        runner=runner,
        project_dir=project_dir,
        git=git,
        profiles_dir=profiles_dir,
        target=target,
        commands=commands,
        allow_failure=allow_failure,
        env_file=env_file,
        env=env,
        timeout=timeout,
        overlap=overlap,
        catchup=catchup,
        catchup_grace=catchup_grace or 3600.0,
        enabled=enabled,
        description=str(description) if description is not None else None,
        image=_optional_str(merged, "image", key_path, issues),
        retention=job_retention,
    )


def _check_runner_needs(job: Job, aws: AwsSettings | None, issues: _Issues) -> None:
    """What a job's runner needs from the rest of the file."""
    if job.runner != "ecs":
        return
    where = f"jobs.{job.name}"
    if aws is None:
        issues.add(f"{where}.runner", "runner 'ecs' needs an `aws:` section (region, cluster, bucket…)")
    if job.git is None:
        issues.add(
            where,
            "runner 'ecs' fetches the code in the task: set `git: {url: …}` instead of `project_dir`",
        )
    if job.env_file is not None:
        issues.add(
            f"{where}.env_file",
            "an ECS task reads its env file from S3: put these variables in `aws.env_file` "
            "(uploaded by `scheduler.py bootstrap`)",
        )
    if job.profiles_dir is not None:
        issues.add(f"{where}.profiles_dir", "an ECS task uses the profiles.yml in the project: remove it")
    # A job's env travels in RunTask's containerOverrides, which anyone with ecs:DescribeTasks
    # reads, and which the console and CloudTrail show: no secret belongs there.
    for name, value in job.env.items():
        if is_secret_name(name) or has_url_credential(value):
            issues.add(
                f"{where}.env.{name}",
                "an ECS job's env is visible in the task's overrides (DescribeTasks, the console, "
                "CloudTrail): put secrets in `aws.env_file` (or `aws.secrets`), not in `env`",
            )


def _aws(value: Any, memo: _Memo, issues: _Issues) -> AwsSettings | None:
    if not isinstance(value, dict):
        issues.add("aws", "must be a mapping (region, cluster, bucket…)")
        return None
    before = len(issues.items)
    _check_unknown(value, AWS_KEYS, "aws", issues)
    known = {k: v for k, v in value.items() if k in AWS_KEYS and v is not None}
    region = known.get("region")
    if not isinstance(region, str) or not region:
        issues.add("aws.region", "missing: the AWS region, e.g. eu-west-1")
    launch_type = str(known.get("launch_type", "EC2")).upper()
    if launch_type not in LAUNCH_TYPES:
        issues.add("aws.launch_type", f"{known['launch_type']!r} is not allowed: use EC2 or FARGATE")
    if launch_type == "FARGATE" and not known.get("subnets"):
        issues.add("aws.subnets", "FARGATE tasks need at least one subnet (awsvpc networking)")
    settings: dict[str, Any] = {"launch_type": launch_type}
    for key in ("subnets", "security_groups"):
        items = known.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            issues.add(f"aws.{key}", "must be a list of ids")
        else:
            settings[key] = tuple(items)
    for key in ("cpu", "memory", "log_retention_days", "start_retries"):
        if key in known:
            number = known[key]
            limit = MAX_START_RETRIES if key == "start_retries" else MAX_COUNT
            if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= limit:
                issues.add(f"aws.{key}", f"must be a whole number from 0 to {limit}, got {_shown(number)}")
            else:
                settings[key] = number
    for key in ("poll_interval", "start_retry_backoff"):
        if key in known:
            seconds = _duration_or_issue(known[key], f"aws.{key}", issues, memo, allow_zero=True)
            if seconds is not None and key == "poll_interval" and seconds < MIN_POLL_INTERVAL:
                issues.add(
                    "aws.poll_interval",
                    f"{known[key]!r} is too often: at least 1s (ECS throttles describe_tasks per "
                    "account and Region, a budget shared with every other caller)",
                )
            elif seconds is not None:
                settings[key] = seconds
    for key in ("env_file", "project_dir"):
        if key in known:
            if not isinstance(known[key], str):
                issues.add(f"aws.{key}", "must be a path (string)")
            elif "\0" in known[key]:
                issues.add(f"aws.{key}", _NUL_IN_PATH)
            else:
                settings[key] = memo.path(known[key])
    if "assign_public_ip" in known:
        if not isinstance(known["assign_public_ip"], bool):
            issues.add("aws.assign_public_ip", "must be true or false")
        else:
            settings["assign_public_ip"] = known["assign_public_ip"]
    if known.get("engine", "docker") not in ENGINES:
        issues.add("aws.engine", f"{known['engine']!r} is not allowed: use docker or podman")
    elif "engine" in known:
        settings["engine"] = known["engine"]
    for key in AWS_KEYS:
        if key in known and key not in _AWS_TYPED_KEYS:
            item = known[key]
            if not isinstance(item, str) or not item or CONTROL.search(item):
                issues.add(
                    f"aws.{key}", f"must be a non-empty string of printable characters, got {_shown(item)}"
                )
            else:
                settings[key] = item
    if len(issues.items) > before:
        return None
    return AwsSettings(**settings)


# The aws keys `_aws` checks one by one; every other one is a non-empty string.
_AWS_TYPED_KEYS = frozenset(
    {
        "launch_type",
        "subnets",
        "security_groups",
        "cpu",
        "memory",
        "log_retention_days",
        "start_retries",
        "poll_interval",
        "start_retry_backoff",
        "env_file",
        "project_dir",
        "assign_public_ip",
        "engine",
    }
)


def _docker(value: Any, issues: _Issues) -> DockerSettings:
    if not isinstance(value, dict):
        issues.add("docker", "must be a mapping (engine, image, extra_args)")
        return DockerSettings()
    _check_unknown(value, DOCKER_KEYS, "docker", issues)
    engine = value.get("engine", "docker")
    if engine not in ENGINES:
        issues.add("docker.engine", f"{engine!r} is not allowed: use docker or podman")
        engine = "docker"
    image = value.get("image", DockerSettings.image)
    if not isinstance(image, str) or not image:
        issues.add("docker.image", "must be an image name such as dbt-scheduler:latest")
        image = DockerSettings.image
    extra = value.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        issues.add("docker.extra_args", "must be a list of strings")
        extra = []
    return DockerSettings(engine=engine, image=image, extra_args=tuple(extra))


def _merge(defaults: dict, raw: dict) -> dict:
    merged = dict(defaults)
    for key, value in raw.items():
        if value is None:
            merged.pop(key, None)  # explicit null: back to the built-in default
        elif key == "env" and isinstance(value, dict) and isinstance(defaults.get("env"), dict):
            merged["env"] = {**defaults["env"], **value}
        else:
            merged[key] = value
    return merged


def _check_unknown(mapping: dict, known: tuple[str, ...], where: str, issues: _Issues) -> None:
    if mapping.keys() <= _key_set(known):  # the usual case, in one set comparison
        return
    for key in mapping:
        if key not in known:
            path = f"{where}.{key}" if where else str(key)
            hint = _did_you_mean(str(key), known) or f" (known keys: {', '.join(known)})"
            issues.add(path, f"unknown key{hint}")


@lru_cache(maxsize=16)
def _key_set(known: tuple[str, ...]) -> frozenset[str]:
    return frozenset(known)


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f": did you mean '{close[0]}'?" if close else ""


def _timezone(value: Any, path: str, issues: _Issues, memo: _Memo) -> ZoneInfo | None:
    if not isinstance(value, str) or not value:
        issues.add(path, f"must be an IANA time zone name such as 'Europe/Paris', got {value!r}")
        return None
    zone = memo.zones.get(value)
    if zone is None:
        try:
            zone = ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            zone = f"unknown time zone {value!r}: use an IANA name such as 'UTC' or 'America/New_York'"
        memo.zones[value] = zone
    if isinstance(zone, str):
        issues.add(path, zone)
        return None
    return zone


def _trigger(
    merged: dict,
    tz: ZoneInfo | None,
    where: str,
    key_path: Callable[[str], str],
    issues: _Issues,
    memo: _Memo,
) -> Trigger | None:
    schedule, every = merged.get("schedule"), merged.get("every")
    if schedule is None and every is None:
        issues.add(where, "set `schedule` (cron, e.g. '0 6 * * *') or `every` (e.g. '15 minutes')")
        return None
    if schedule is not None and every is not None:
        issues.add(where, "set either `schedule` or `every`, not both")
        return None
    key = "schedule" if schedule is not None else "every"
    value = schedule if schedule is not None else every
    if not isinstance(value, str | int) or isinstance(value, bool):
        issues.add(key_path(key), f"must be a string, got {value!r}")
        return None
    text = str(value)
    valid_zone = tz is not None
    if tz is None:
        # The zone is reported already; the expression is still checked (in UTC: its
        # validity does not depend on the zone), so one error does not hide another.
        tz = ZoneInfo("UTC")
    cache_key = (key, text, tz)
    trigger = memo.triggers.get(cache_key)
    if trigger is None:
        # Triggers are immutable, so jobs with the same schedule and zone share one.
        try:
            trigger = parse_cron(text, tz) if key == "schedule" else parse_every(text, tz)
        except ValueError as exc:
            trigger = str(exc)
        memo.triggers[cache_key] = trigger
    if isinstance(trigger, str):
        issues.add(key_path(key), trigger)
        return None
    return trigger if valid_zone else None


def _resolve_path(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def _optional_path(
    merged: dict, key: str, memo: _Memo, key_path: Callable[[str], str], issues: _Issues
) -> Path | None:
    value = merged.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        issues.add(key_path(key), f"must be a path (string), got {_shown(value)}")
        return None
    if "\0" in value:
        issues.add(key_path(key), _NUL_IN_PATH)
        return None
    return memo.path(value)


def _optional_str(merged: dict, key: str, key_path: Callable[[str], str], issues: _Issues) -> str | None:
    value = merged.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        issues.add(key_path(key), f"must be a non-empty string, got {_shown(value)}")
        return None
    if CONTROL.search(value):
        issues.add(key_path(key), f"contains a control character (newline, tab, NUL…): {_shown(value)}")
        return None
    return value


def _git(value: Any, path: str, issues: _Issues) -> GitSource | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict):
        issues.add(path, "must be a mapping: {url: …, ref: main, subdir: …}")
        return None
    _check_unknown(value, GIT_KEYS, path, issues)
    url = value.get("url")
    if not isinstance(url, str) or not url:
        issues.add(f"{path}.url", "missing: the repository URL (https://…, git@…, or file:///…)")
        return None
    for check in GIT_URL_CHECKS:
        problem = check(url)
        if problem is not None:
            issues.add(f"{path}.url", problem)
            return None
    ref, subdir = value.get("ref"), value.get("subdir")
    for key, item in (("ref", ref), ("subdir", subdir)):
        if item is not None and (not isinstance(item, str | int) or isinstance(item, bool)):
            issues.add(f"{path}.{key}", f"must be a string, got {item!r}")
    return GitSource(
        url=url,
        ref=str(ref) if ref is not None else None,
        subdir=str(subdir) if subdir is not None else None,
    )


# Schemes git fetches over that a scheduled job can use (`git clone` also takes ext::,
# which runs a command, and fd::, neither of which belongs in a config file).
GIT_SCHEMES = ("https", "http", "ssh", "git", "file")
_SCP_LIKE = re.compile(r"(?:[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/:].*|/.+)")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>[^/]*)(?P<path>/.*)?")


def _git_url_shape(url: str) -> str | None:
    """Why `url` is not a repository URL git can fetch, or None.

    Accepted: `https|http|ssh|git://host/path` (host and path non-empty), `file:///path`,
    and scp-like `[user@]host:path` (git@github.com:org/repo.git). No whitespace or
    control characters anywhere: git would read them as the end of the URL or refuse.
    """
    hint = "use https://host/org/repo.git, ssh://git@host/org/repo.git, git@host:org/repo.git or file:///path"
    if CONTROL.search(url) or any(c.isspace() for c in url):
        return f"contains whitespace or a control character: {_shown(url)}; {hint}"
    match = _URL.fullmatch(url)
    if match is not None:
        scheme = match["scheme"].lower()
        if scheme not in GIT_SCHEMES:
            return f"scheme {scheme!r} is not one git fetches here ({', '.join(GIT_SCHEMES)}); {hint}"
        if scheme != "file" and not match["host"].rsplit("@", 1)[-1]:
            return f"{_shown(url)} names no host; {hint}"
        if scheme == "file" and match["host"]:
            return f"{_shown(url)}: a file URL has three slashes, file:///absolute/path"
        if not (match["path"] or "/").strip("/"):
            return f"{_shown(url)} names no repository path; {hint}"
        return None
    if "://" not in url and _SCP_LIKE.fullmatch(url):
        return None
    return f"{_shown(url)} is not a git URL; {hint}"


def _git_url_credential(url: str) -> str | None:
    """A token or password in the URL (lib/secrets.py's one definition) would be printed by
    git, stored in .git/config and shown in `ps`: refused for every runner."""
    if url_credential(url) is not None:
        return (
            "contains a token or password in its userinfo (`https://TOKEN@…`, `user:pw@`): "
            "remove it and pass the token as env DBT_ENV_SECRET_GIT_TOKEN"
        )
    return None


# Each check takes the URL and returns why it is refused, or None; the first refusal is
# reported. The hook for rules about what a URL may carry (credentials, hosts). The
# credential check goes first: the others quote the URL in their message.
GIT_URL_CHECKS: tuple[Callable[[str], str | None], ...] = (_git_url_credential, _git_url_shape)


def _commands(value: Any, path: str, issues: _Issues, memo: _Memo) -> tuple[tuple[str, ...], frozenset[int]]:
    """The command lines and the indices of those allowed to fail.

    An entry is a string, or a mapping `{run: "dbt …", allow_failure: true}`. Each
    line must be one that docker/run_commands.sh runs (lib/command_grammar.py), so
    `dbt build; rm -rf /` is refused here, not when the run starts.
    """
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        issues.add(path, f"must be a non-empty list of dbt commands, e.g. ['dbt build'], got {value!r}")
        return (), frozenset()
    commands: list[str] = []
    allowed: set[int] = set()
    for i, entry in enumerate(value):
        where = f"{path}[{i}]"
        command = entry
        if isinstance(entry, dict):
            _check_unknown(entry, COMMAND_KEYS, where, issues)
            command = entry.get("run")
            if command is None:
                issues.add(where, "missing `run`: the command, e.g. {run: 'dbt build', allow_failure: true}")
                continue
            flag = entry.get("allow_failure", False)
            if not isinstance(flag, bool):
                issues.add(f"{where}.allow_failure", f"must be true or false, got {flag!r}")
            elif flag:
                allowed.add(i)
            where = f"{where}.run"
        if not isinstance(command, str):
            issues.add(where, f"must be a dbt command (string) or {{run: …}}, got {_shown(command)}")
            continue
        if "\0" in command:
            issues.add(where, "contains a NUL byte: no process can take it as an argument")
            continue
        checked = memo.commands.get(command)
        if checked is None:
            try:
                checked = memo.commands[command] = (check_command(command), "")
            except CommandSyntaxError as exc:
                checked = memo.commands[command] = (None, str(exc))
        if checked[0] is None:
            issues.add(where, checked[1])
            continue
        commands.append(checked[0])
    return tuple(commands), frozenset(allowed)


def _retention(value: Any, inherited: Retention, path: str, issues: _Issues) -> Retention:
    """`retention:` read over `inherited` key by key; null inside it means "no limit"."""
    if value is None:
        return inherited
    if not isinstance(value, dict):
        issues.add(path, f"must be a mapping such as {{keep_days: 90, keep_failed_work: 5}}, got {value!r}")
        return inherited
    _check_unknown(value, RETENTION_KEYS, path, issues)
    settings: dict[str, int | None] = {}
    for key, minimum, maximum, meaning in (
        ("keep_days", 1, MAX_KEEP_DAYS, "days, or null to keep runs forever"),
        ("keep_failed_work", 0, MAX_COUNT, "runs, or null to keep every failed run's work/"),
    ):
        if key not in value:
            continue
        number = value[key]
        whole = isinstance(number, int) and not isinstance(number, bool)
        if number is not None and (not whole or not minimum <= number <= maximum):
            issues.add(
                f"{path}.{key}",
                f"must be a whole number ≥ {minimum} of {meaning} (at most {maximum}), got {_shown(number)}",
            )
            continue
        settings[key] = number
    return replace(inherited, **settings)


def _env(value: Any, path: str, issues: _Issues, memo: _Memo) -> dict[str, str]:
    if not isinstance(value, dict):
        issues.add(path, "must be a mapping of NAME: value")
        return {}
    env: dict[str, str] = {}
    for name, item in value.items():
        if item.__class__ is str and name in memo.env_names:  # the usual case, without the regex
            env[name] = item
            continue
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            issues.add(f"{path}.{name}", "is not a valid environment variable name")
            continue
        if isinstance(item, dict | list) or item is None:
            issues.add(f"{path}.{name}", f"must be a string or number, got {_shown(item)}")
            continue
        if isinstance(item, str) and "\0" in item:  # the OS cannot pass it: execve takes C strings
            issues.add(f"{path}.{name}", "contains a NUL byte, which no environment variable can hold")
            continue
        env[name] = ("true" if item else "false") if isinstance(item, bool) else str(item)
        memo.env_names.add(name)
    return env


def _choice(value: Any, options: tuple[str, ...], path: str, issues: _Issues) -> str:
    if value not in options:
        issues.add(path, f"{value!r} is not allowed: use one of {', '.join(options)}")
        return options[0]
    return str(value)


def _duration_or_issue(
    value: Any, path: str, issues: _Issues, memo: _Memo, allow_zero: bool = False
) -> float | None:
    if allow_zero and value in (0, "0"):
        return 0.0
    if isinstance(value, bool):
        issues.add(path, f"must be a duration such as 90s, 15m or 2h, got {value!r}")
        return None
    # Keyed by type too: 1 and "1" print differently in messages. Floats are not cached:
    # -0.0 == 0.0 as dict keys, yet their messages differ.
    cache_key = (value.__class__, value) if isinstance(value, str | int) else None
    seconds = memo.durations.get(cache_key) if cache_key is not None else None
    if seconds is None:
        try:
            seconds = parse_duration(value)
        except (ValueError, TypeError) as exc:
            seconds = str(exc)
        if cache_key is not None:
            memo.durations[cache_key] = seconds
    if isinstance(seconds, str):
        issues.add(path, seconds)
        return None
    return seconds


_NUL_IN_PATH = "contains a NUL byte, which no path can hold: remove it"


def _shown(value: Any) -> str:
    return quoted(value, 60)
