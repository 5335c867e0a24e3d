"""jobs.yaml parsing: every key, every error with its location and hint."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lib.config import AWS_KEYS, DOCKER_KEYS, load_config, parse_config
from lib.errors import ConfigError, UnknownJobError
from lib.models import Retention

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory that looks like a dbt project with a profiles.yml."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "dbt_project.yml").write_text("name: p\n")
    (proj / "profiles.yml").write_text("p: {}\n")
    return proj


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(issue) for issue in info.value.issues]


def test_minimal_job_gets_documented_defaults(tmp_path: Path, project: Path) -> None:
    path = write(tmp_path, "jobs:\n  nightly:\n    schedule: '0 6 * * *'\n    project_dir: proj\n")
    config = load_config(path)
    job = config.jobs["nightly"]
    assert job.project_dir == project
    assert job.commands == ("dbt build",)
    assert job.runner == "local"
    assert job.timezone.key == "UTC"
    assert (job.overlap, job.catchup, job.enabled, job.timeout) == ("skip", "none", True, None)
    assert config.state_dir == tmp_path / "state"  # relative to the file, not the cwd
    assert config.max_parallel == 4
    start = datetime(2026, 1, 1, 7, tzinfo=UTC)
    assert job.trigger.next_after(start) == datetime(2026, 1, 2, 6, tzinfo=UTC)


def test_every_key_is_read(tmp_path: Path, project: Path) -> None:
    (tmp_path / "prod.env").write_text("A=1\n")
    path = write(
        tmp_path,
        """\
        state_dir: /var/tmp/somewhere
        max_parallel: 2
        shutdown_grace: 2m
        jobs:
          hourly:
            description: refresh marts
            every: 15 minutes
            timezone: Europe/Paris
            runner: local
            git: {url: "file:///srv/repo.git", ref: main, subdir: analytics}
            profiles_dir: proj
            target: prod
            commands: ["dbt seed", "dbt build --select tag:hourly"]
            env_file: prod.env
            env: {THREADS: 4, FLAG: true}
            timeout: 1h30m
            overlap: allow
            catchup: latest
            catchup_grace: 2h
            enabled: false
        """,
    )
    config = load_config(path)
    job = config.jobs["hourly"]
    assert config.state_dir == Path("/var/tmp/somewhere")
    assert (config.max_parallel, config.shutdown_grace) == (2, 120.0)
    assert job.description == "refresh marts"
    assert job.timezone.key == "Europe/Paris"
    assert job.git is not None and (job.git.url, job.git.ref, job.git.subdir) == (
        "file:///srv/repo.git",
        "main",
        "analytics",
    )
    assert job.project_dir is None
    assert job.profiles_dir == project
    assert job.target == "prod"
    assert job.commands == ("dbt seed", "dbt build --select tag:hourly")
    assert job.env_file == tmp_path / "prod.env"
    assert dict(job.env) == {"THREADS": "4", "FLAG": "true"}
    assert (job.timeout, job.overlap, job.catchup, job.catchup_grace, job.enabled) == (
        5400.0,
        "allow",
        "latest",
        7200.0,
        False,
    )


def test_defaults_merge_not_set_is_distinct_from_false(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults:
          project_dir: proj
          enabled: false
          timeout: 10m
          env: {A: "1", B: "2"}
        jobs:
          inherits: {schedule: "@daily"}
          overrides: {schedule: "@daily", enabled: true, env: {B: "3"}}
          unsets: {schedule: "@daily", timeout: null}
        """,
    )
    jobs = load_config(path).jobs
    assert jobs["inherits"].enabled is False and jobs["inherits"].timeout == 600.0
    assert jobs["overrides"].enabled is True
    assert dict(jobs["overrides"].env) == {"A": "1", "B": "3"}
    assert jobs["unsets"].timeout is None


def test_bad_cron_is_located_with_line_and_reason(tmp_path: Path, project: Path) -> None:
    path = write(tmp_path, "jobs:\n  nightly:\n    project_dir: proj\n    schedule: '61 * * * *'\n")
    [error] = errors_of(path)
    assert error.startswith(f"{path}:4 jobs.nightly.schedule: ")
    assert "'61 * * * *' is not a valid cron expression" in error
    assert "minute must be 0-59" in error


def test_all_errors_are_collected_at_once(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        """\
        max_parallel: 0
        jobs:
          a:
            project_dir: proj
            schedule: "0 6 * * *"
            timezone: Mars/Olympus
            overlap: queue
          b:
            project_dir: proj
            every: 5 fortnights
            runner: kubernetes
            catchup: all
            timeout: soon
        """,
    )
    errors = errors_of(path)
    joined = "\n".join(errors)
    assert len(errors) == 7, joined
    assert f"{path}:1 max_parallel:" in joined
    assert f"{path}:6 jobs.a.timezone: unknown time zone 'Mars/Olympus'" in joined
    assert f"{path}:7 jobs.a.overlap: 'queue' is not allowed: use one of skip, allow" in joined
    assert f"{path}:10 jobs.b.every:" in joined
    assert f"{path}:11 jobs.b.runner: 'kubernetes' is not a runner" in joined
    assert f"{path}:12 jobs.b.catchup:" in joined
    assert f"{path}:13 jobs.b.timeout:" in joined


def test_unknown_keys_get_did_you_mean(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        "defautls: {}\njobs:\n  a:\n    project_dir: proj\n    schedule: '@hourly'\n    comands: [dbt run]\n",
    )
    errors = errors_of(path)
    assert f"{path}:1 defautls: unknown key: did you mean 'defaults'?" in errors
    assert f"{path}:6 jobs.a.comands: unknown key: did you mean 'commands'?" in errors


def test_unknown_key_without_close_match_lists_known_keys(tmp_path: Path, project: Path) -> None:
    path = write(tmp_path, "jobs:\n  a:\n    project_dir: proj\n    schedule: '@hourly'\n    zzz: 1\n")
    [error] = errors_of(path)
    assert "jobs.a.zzz: unknown key (known keys: schedule, every, timezone" in error


@pytest.mark.parametrize(
    ("job_yaml", "expected"),
    [
        ("project_dir: proj", "set `schedule` (cron, e.g. '0 6 * * *') or `every`"),
        ("project_dir: proj\n    schedule: '@daily'\n    every: 1 hour", "either `schedule` or `every`"),
        ("schedule: '@daily'", "set `project_dir` (a local dbt project) or `git: {url: …}`"),
        ("schedule: '@daily'\n    project_dir: nowhere", "has no dbt_project.yml"),
        ("schedule: '@daily'\n    project_dir: proj\n    commands: [ls -la]", "is not a dbt command"),
        ("schedule: '@daily'\n    project_dir: proj\n    commands: []", "non-empty list of dbt commands"),
        (
            "schedule: '@daily'\n    project_dir: proj\n    env_file: missing.env",
            "missing.env does not exist",
        ),
        ("schedule: '@daily'\n    project_dir: proj\n    enabled: 'yes'", "must be true or false"),
        ("schedule: '@daily'\n    project_dir: proj\n    env: {1BAD: x}", "not a valid environment variable"),
        (
            "schedule: '@daily'\n    runner: ecs\n    project_dir: proj",
            "runner 'ecs' needs an `aws:` section",
        ),
        ("schedule: '@daily'\n    runner: ecs\n    project_dir: proj", "set `git: {url: …}` instead"),
        (
            "schedule: '@daily'\n    git: {url: 'https://bob:tok@example.com/r.git'}",
            "DBT_ENV_SECRET_GIT_TOKEN",
        ),
        ("schedule: '@daily'\n    git: {ref: main}", "jobs.a.git.url: missing"),
        ("schedule: '@reboot'\n    project_dir: proj", "@reboot"),
    ],
)
def test_job_errors(tmp_path: Path, project: Path, job_yaml: str, expected: str) -> None:
    path = write(tmp_path, f"jobs:\n  a:\n    {job_yaml}\n")
    errors = "\n".join(errors_of(path))
    assert expected in errors
    assert "jobs.a" in errors


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs:\n  a:\n    schedule: '0 6 * * *\n    project_dir: x\n")
    [error] = errors_of(path)
    assert error.startswith(f"{path}:")
    assert "invalid YAML" in error


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    [error] = errors_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in error and "--config" in error


def test_missing_jobs_key_and_wrong_top_level_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="jobs: missing"):
        parse_config({"state_dir": "x"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config(["jobs"], base_dir=tmp_path)


def test_unknown_job_lookup_suggests(tmp_path: Path, project: Path) -> None:
    path = write(tmp_path, "jobs:\n  nightly:\n    schedule: '@daily'\n    project_dir: proj\n")
    config = load_config(path)
    with pytest.raises(UnknownJobError, match="no job named 'nightyl': did you mean 'nightly'"):
        config.job("nightyl")


def test_the_shipped_jobs_yaml_is_valid() -> None:
    config = load_config(REPO / "jobs.yaml")
    assert "example" in config.jobs
    assert config.jobs["example"].project_dir == REPO / "example"


def test_aws_and_docker_sections(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        """\
        aws:
          region: eu-west-1
          cluster: analytics
          bucket: acme-dbt
          env_file: prod.env
          poll_interval: 5s
          cpu: 512
        docker: {engine: podman, image: "acme/dbt:1", extra_args: [--runtime, runc]}
        jobs:
          remote:
            schedule: "@daily"
            runner: ecs
            git: {url: "https://example.com/acme/dbt.git"}
          local_image:
            schedule: "@daily"
            runner: docker
            project_dir: proj
            image: acme/dbt:2
        """,
    )
    config = load_config(path)
    assert config.aws is not None
    assert (config.aws.region, config.aws.cluster, config.aws.bucket) == (
        "eu-west-1",
        "analytics",
        "acme-dbt",
    )
    assert config.aws.env_file == tmp_path / "prod.env"
    assert (config.aws.poll_interval, config.aws.cpu, config.aws.launch_type) == (5.0, 512, "EC2")
    assert config.docker.engine == "podman" and config.docker.extra_args == ("--runtime", "runc")
    assert config.jobs["local_image"].image == "acme/dbt:2"


def test_aws_section_errors(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        """\
        aws: {launch_type: fargate, clustr: x, cpu: lots}
        jobs:
          remote:
            schedule: "@daily"
            runner: ecs
            git: {url: "https://example.com/acme/dbt.git"}
            env_file: x.env
        """,
    )
    errors = "\n".join(errors_of(path))
    assert "aws.region: missing" in errors
    assert "aws.subnets: FARGATE tasks need at least one subnet" in errors
    assert "aws.clustr: unknown key: did you mean 'cluster'?" in errors
    assert "aws.cpu: must be a whole number" in errors
    assert "jobs.remote.env_file:" in errors


def test_values_shared_by_jobs_are_reported_for_each_job(tmp_path: Path, project: Path) -> None:
    """parse_config checks each distinct value once; every job still gets its own error."""
    path = write(
        tmp_path,
        """\
        defaults:
          project_dir: proj
          timeout: soon
        jobs:
          a:
            schedule: '61 * * * *'
            commands: [ls]
          b:
            schedule: '61 * * * *'
            commands: [ls]
          c:
            schedule: '@daily'
            timezone: Mars/Olympus
          d:
            schedule: '@daily'
            timezone: Mars/Olympus
        """,
    )
    errors = errors_of(path)
    joined = "\n".join(errors)
    for job, line in (("a", 6), ("b", 9)):
        assert f"{path}:{line} jobs.{job}.schedule: '61 * * * *' is not a valid cron" in joined
        assert f"{path}:{line + 1} jobs.{job}.commands[0]: 'ls' is not a dbt command" in joined
    for job, line in (("c", 13), ("d", 16)):
        assert f"{path}:{line} jobs.{job}.timezone: unknown time zone 'Mars/Olympus'" in joined
    # An inherited bad default is one problem with one fix: reported once, at the defaults line.
    assert sum(error.startswith(f"{path}:3 defaults.timeout: 'soon'") for error in errors) == 1
    assert len(errors) == 7, joined


def test_jobs_with_one_schedule_share_an_equal_trigger(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        "jobs:\n  a: {schedule: '0 6 * * *', project_dir: proj}\n"
        "  b: {schedule: '0 6 * * *', project_dir: proj, timezone: Europe/Paris}\n"
        "  c: {schedule: '0 6 * * *', project_dir: proj}\n",
    )
    jobs = load_config(path).jobs
    start = datetime(2026, 1, 1, 7, tzinfo=UTC)
    assert jobs["a"].trigger == jobs["c"].trigger != jobs["b"].trigger
    assert jobs["c"].trigger.next_after(start) == datetime(2026, 1, 2, 6, tzinfo=UTC)
    assert jobs["b"].trigger.next_after(start) == datetime(2026, 1, 2, 5, tzinfo=UTC)


def test_file_checks_are_fresh_on_every_load(tmp_path: Path, project: Path) -> None:
    path = write(tmp_path, "jobs:\n  a: {schedule: '@daily', project_dir: proj, env_file: later.env}\n")
    [error] = errors_of(path)
    assert "later.env does not exist" in error
    (tmp_path / "later.env").write_text("A=1\n")
    assert load_config(path).jobs["a"].env_file == tmp_path / "later.env"


def test_load_config_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, project: Path) -> None:
    import gc

    good = write(tmp_path, "jobs:\n  a: {schedule: '@daily', project_dir: proj}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs:\n  a: {schedule: '61 * * * *', project_dir: proj}\n")
    assert gc.isenabled()
    load_config(good)
    assert gc.isenabled()
    with pytest.raises(ConfigError):
        load_config(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        load_config(good)
        assert not gc.isenabled()
    finally:
        gc.enable()


# --------------------------------------------------------------------------- one grammar, every error


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("dbt build; rm -rf /", "shell syntax ';' is not supported"),
        ("dbt build && dbt test", "shell syntax '&' is not supported"),
        ("dbt ls | wc -l", "shell syntax '|' is not supported"),
        ("dbt build > out.log", "shell syntax '>' is not supported"),
        ("dbt build --target $TARGET", "shell syntax '$' is not supported"),
        ('dbt build --target "$TARGET"', "'$' inside double quotes"),
        ("dbt build --select 'open", "unterminated ' quote"),
        ("dbt build \\", "trailing backslash"),
    ],
)
def test_commands_the_script_would_refuse_are_refused_at_validate(
    tmp_path: Path, project: Path, command: str, reason: str
) -> None:
    """What `validate` accepts is what docker/run_commands.sh runs (tests/test_command_grammar.py)."""
    path = write(
        tmp_path,
        "jobs:\n  nightly:\n    schedule: '@daily'\n    project_dir: proj\n    commands:\n"
        f"      - dbt seed\n      - {json.dumps(command)}\n",
    )
    [error] = errors_of(path)
    assert error.startswith(f"{path}:7 jobs.nightly.commands[1]: "), error
    assert reason in error


def test_a_bad_timezone_does_not_hide_a_bad_cron(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        "jobs:\n  a:\n    project_dir: proj\n    timezone: Mars/Olympus\n    schedule: '61 * * * *'\n"
        "  b:\n    project_dir: proj\n    timezone: Mars/Olympus\n    every: 5 fortnights\n",
    )
    errors = "\n".join(errors_of(path))
    assert f"{path}:4 jobs.a.timezone: unknown time zone" in errors
    assert f"{path}:5 jobs.a.schedule: '61 * * * *' is not a valid cron" in errors
    assert f"{path}:8 jobs.b.timezone: unknown time zone" in errors
    assert f"{path}:9 jobs.b.every:" in errors


def test_a_missing_defaults_env_file_is_one_message(tmp_path: Path, project: Path) -> None:
    jobs = "".join(f"  job{i}: {{schedule: '@daily'}}\n" for i in range(5))
    path = write(tmp_path, f"defaults:\n  project_dir: proj\n  env_file: missing.env\njobs:\n{jobs}")
    [error] = errors_of(path)
    assert error.startswith(f"{path}:3 defaults.env_file: ") and "missing.env does not exist" in error


_JOB = {"schedule": "@daily", "project_dir": "proj"}
_AWS = {"region": "eu-west-1"}
# (where the wrong value goes, the key, the value): every top-level key and every job key,
# each with a value of the wrong type. Each must be one located config error, never a traceback.
WRONG_TYPES = [
    *(("top", key, value) for key in ("state_dir",) for value in (5, True, [], {"a": 1})),
    ("top", "max_parallel", "x"),
    ("top", "max_parallel", []),
    ("top", "max_parallel", 1.5),
    ("top", "shutdown_grace", []),
    ("top", "shutdown_grace", {"a": 1}),
    ("top", "retention", "forever"),
    ("top", "retention", [30]),
    ("top", "defaults", []),
    ("top", "defaults", "x"),
    ("top", "aws", "x"),
    ("top", "aws", []),
    ("top", "docker", 5),
    ("top", "jobs", []),
    ("top", "jobs", "x"),
    ("job", "description", ["a"]),
    ("job", "description", {"a": 1}),
    ("job", "schedule", ["0 6 * * *"]),
    ("job", "schedule", True),
    ("job", "every", {"hours": 1}),  # `schedule` is dropped for this one
    ("job", "timezone", 5),
    ("job", "timezone", []),
    ("job", "runner", []),
    ("job", "project_dir", 5),
    ("job", "project_dir", []),
    ("job", "git", 5),
    ("job", "git", []),
    ("job", "profiles_dir", 5),
    ("job", "target", []),
    ("job", "target", 5),
    ("job", "commands", 5),
    ("job", "commands", {"run": "dbt build"}),
    ("job", "commands", [5]),
    ("job", "commands", [["dbt build"]]),
    ("job", "env_file", 5),
    ("job", "env", "A=1"),
    ("job", "env", []),
    ("job", "env", {"A": [1]}),
    ("job", "timeout", []),
    ("job", "timeout", True),
    ("job", "overlap", []),
    ("job", "catchup", 5),
    ("job", "catchup_grace", {}),
    ("job", "enabled", "yes"),
    ("job", "image", 5),
    ("job", "retention", 30),
    ("job", "retention", {"keep_days": "30"}),
    *(("aws", key, {"a": 1}) for key in sorted(AWS_KEYS)),
    *(("docker", key, 5) for key in sorted(DOCKER_KEYS)),
    *(("git", key, []) for key in ("url", "ref", "subdir")),
]


@pytest.mark.parametrize(("where", "key", "value"), WRONG_TYPES, ids=lambda v: repr(v)[:30])
def test_a_wrong_type_is_a_located_config_error(
    tmp_path: Path, project: Path, where: str, key: str, value: object
) -> None:
    job = dict(_JOB)
    top: dict[str, object] = {}
    if where == "top":
        top[key] = value
    elif where == "job":
        job[key] = value
        if key in ("git", "every"):
            job.pop("project_dir" if key == "git" else "schedule")
    elif where == "git":
        job.pop("project_dir")
        job["git"] = {"url": "file:///srv/repo.git", key: value}
    else:
        top[where] = {**(_AWS if where == "aws" else {}), key: value}
    lines = [f"{name}: {json.dumps(item)}" for name, item in top.items()]
    if "jobs" not in top:
        lines += ["jobs:", "  a:", *(f"    {name}: {json.dumps(item)}" for name, item in job.items())]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    expected = {"top": key, "job": f"jobs.a.{key}", "git": f"jobs.a.git.{key}"}.get(where, f"{where}.{key}")
    located = [issue for issue in info.value.issues if issue.path.startswith(expected)]
    assert located, f"no issue at {expected}: {info.value}"
    assert all(issue.line is not None and issue.file == str(path) for issue in located), info.value


def test_aws_poll_interval_has_a_minimum(tmp_path: Path) -> None:
    for value, ok in (("1s", True), ("90s", True), (0.5, False), (0, False), ("0.2s", False)):
        data = {"aws": {"region": "eu-west-1", "poll_interval": value}, "jobs": {}}
        if ok:
            assert parse_config(data, base_dir=tmp_path).aws.poll_interval >= 1
        else:
            with pytest.raises(ConfigError) as info:
                parse_config(data, base_dir=tmp_path)
            [issue] = info.value.issues
            assert issue.path == "aws.poll_interval" and "at least 1s" in issue.message, issue


# --------------------------------------------------------------------------- commands: mapping form


def test_commands_may_be_mappings_with_allow_failure(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        """\
        jobs:
          fresh:
            schedule: '@daily'
            project_dir: proj
            commands:
              - {run: "dbt source freshness", allow_failure: true}
              - "  dbt build --select 'tag:a b'  "
              - {run: dbt test}
              - {run: dbt docs generate, allow_failure: false}
          plain: {schedule: '@daily', project_dir: proj, commands: dbt run}
        """,
    )
    jobs = load_config(path).jobs
    assert jobs["fresh"].commands == (
        "dbt source freshness",
        "dbt build --select 'tag:a b'",
        "dbt test",
        "dbt docs generate",
    )
    assert jobs["fresh"].allow_failure == frozenset({0})
    assert (jobs["plain"].commands, jobs["plain"].allow_failure) == (("dbt run",), frozenset())


def test_command_mapping_errors(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        """\
        jobs:
          a:
            schedule: '@daily'
            project_dir: proj
            commands:
              - {run: "dbt source freshness", allow_fail: true}
              - {allow_failure: true}
              - {run: "dbt build", allow_failure: "yes"}
              - {run: "dbt build | tee x"}
              - {run: 5}
              - "# just a comment"
        """,
    )
    errors = errors_of(path)
    joined = "\n".join(errors)
    assert f"{path}:6 jobs.a.commands[0].allow_fail: unknown key: did you mean 'allow_failure'?" in joined
    assert f"{path}:7 jobs.a.commands[1]: missing `run`" in joined
    assert f"{path}:8 jobs.a.commands[2].allow_failure: must be true or false, got 'yes'" in joined
    assert (
        f"{path}:9 jobs.a.commands[3].run: 'dbt build | tee x' cannot be parsed (shell syntax '|'" in joined
    )
    assert f"{path}:10 jobs.a.commands[4].run: must be a dbt command" in joined
    assert f"{path}:11 jobs.a.commands[5]: '# just a comment' is a comment" in joined
    assert len(errors) == 6, joined


# --------------------------------------------------------------------------- retention


def test_retention_defaults_top_level_and_per_job_key_by_key(tmp_path: Path, project: Path) -> None:
    base = "jobs:\n  a: {schedule: '@daily', project_dir: proj}\n"
    config = load_config(write(tmp_path, base))
    assert config.retention == Retention(keep_days=90, keep_failed_work=5)
    assert config.jobs["a"].retention == config.retention
    path = write(
        tmp_path,
        """\
        retention: {keep_days: 30, keep_failed_work: 2}
        jobs:
          inherits: {schedule: '@daily', project_dir: proj}
          fewer_days: {schedule: '@daily', project_dir: proj, retention: {keep_days: 7}}
          forever:
            schedule: '@daily'
            project_dir: proj
            retention: {keep_days: null, keep_failed_work: null}
          back_to_top: {schedule: '@daily', project_dir: proj, retention: null}
          no_work: {schedule: '@daily', project_dir: proj, retention: {keep_failed_work: 0}}
        """,
    )
    config = load_config(path)
    jobs = config.jobs
    assert config.retention == Retention(30, 2)
    assert jobs["inherits"].retention == Retention(30, 2)
    assert jobs["fewer_days"].retention == Retention(7, 2)
    assert jobs["forever"].retention == Retention(None, None)
    assert jobs["back_to_top"].retention == Retention(30, 2)
    assert jobs["no_work"].retention == Retention(30, 0)


def test_retention_errors(tmp_path: Path, project: Path) -> None:
    path = write(
        tmp_path,
        """\
        retention: {keep_days: 0, keep_failed_wrok: 3}
        defaults:
          project_dir: proj
          retention: {keep_days: 5}
        jobs:
          a: {schedule: '@daily', retention: {keep_failed_work: -1}}
          b: {schedule: '@daily', retention: {keep_days: 1.5}}
        """,
    )
    joined = "\n".join(errors_of(path))
    assert (
        f"{path}:1 retention.keep_days: must be a whole number ≥ 1 of days, or null to keep runs forever"
        in joined
    )
    assert f"{path}:1 retention.keep_failed_wrok: unknown key: did you mean 'keep_failed_work'?" in joined
    assert f"{path}:4 defaults.retention: set `retention:` at the top level" in joined
    assert f"{path}:6 jobs.a.retention.keep_failed_work: must be a whole number ≥ 0" in joined
    assert f"{path}:7 jobs.b.retention.keep_days: must be a whole number ≥ 1" in joined


def test_an_ecs_jobs_env_holds_no_secret_and_a_git_url_no_credential(tmp_path: Path, project: Path) -> None:
    """An ECS job's env travels in RunTask's overrides (DescribeTasks, CloudTrail): secrets are
    refused there; a token or password in any job's git URL is refused, for every runner."""
    path = write(
        tmp_path,
        """
        aws: {region: eu-west-1, bucket: b}
        jobs:
          on_ecs:
            schedule: '0 6 * * *'
            runner: ecs
            git: https://github.com/acme/shop.git
            env:
              DBT_ENV_SECRET_SNOWFLAKE_PASSWORD: hunter2
              WAREHOUSE_URL: "postgres://loader:pw@db.internal/analytics"
              TARGET_SCHEMA: analytics
          tokened:
            schedule: '0 6 * * *'
            git: https://ghp_abc123@github.com/acme/shop.git
          over_ssh:
            schedule: '0 6 * * *'
            git: ssh://git@github.com/acme/shop.git
        """,
    )
    errors = errors_of(path)
    ecs = [e for e in errors if "jobs.on_ecs.env" in e]
    assert len(ecs) == 2 and all("put secrets in `aws.secrets` (or `aws.env_file`)" in e for e in ecs), errors
    assert any("DBT_ENV_SECRET_SNOWFLAKE_PASSWORD" in e for e in ecs)
    assert any("WAREHOUSE_URL" in e for e in ecs)
    assert not any("TARGET_SCHEMA" in e for e in errors)
    [tokened] = [e for e in errors if "jobs.tokened.git" in e]
    assert "DBT_ENV_SECRET_GIT_TOKEN" in tokened and "ghp_abc123" not in tokened
    assert not any("over_ssh" in e for e in errors)  # ssh://git@ names a user


# --------------------------------------------------------------------------- aws.secrets, aws.kms_key

PARAMETER_ARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/dbt/snowflake_password"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dbt/snowflake-AbCdEf"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_aws_secrets_are_read_sorted_by_name_with_their_kms_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        aws:
          region: eu-west-1
          secrets:
            SNOWFLAKE_USER: "{SECRET_ARN}:user::"
            DBT_ENV_SECRET_SNOWFLAKE_PASSWORD: {PARAMETER_ARN}
          kms_key: {KEY_ARN}
        jobs:
          nightly:
            schedule: '0 6 * * *'
            runner: ecs
            git: https://github.com/acme/shop.git
            env: {{SNOWFLAKE_ROLE: transformer}}
        """,
    )
    aws = load_config(path).aws
    assert aws is not None
    assert aws.secrets == (
        ("DBT_ENV_SECRET_SNOWFLAKE_PASSWORD", PARAMETER_ARN),
        ("SNOWFLAKE_USER", f"{SECRET_ARN}:user::"),
    )
    assert aws.kms_key == KEY_ARN
    without = parse_config({"aws": {"region": "eu-west-1"}, "jobs": {}}, base_dir=tmp_path).aws
    assert without is not None and (without.secrets, without.kms_key) == ((), None)


def test_aws_secrets_errors_name_the_line_and_the_fix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        aws:
          region: eu-west-1
          secrets:
            DBT_ENV_SECRET_OK: {PARAMETER_ARN}
            BAD-NAME: {PARAMETER_ARN}
            DBT_COMMANDS: {PARAMETER_ARN}
            PLAIN: /dbt/snowflake_password
            WRONG_SERVICE: arn:aws:s3:::bucket/pw
            JSON_KEY_ALONE: "{SECRET_ARN}:password"
            NUMBER: 5
          kms_key: arn:aws:kms:eu-west-1:123456789012:alias/dbt
        jobs: {{}}
        """,
    )
    assert errors_of(path) == [
        f"{path}:5 aws.secrets.BAD-NAME: is not a valid environment variable name "
        "(letters, digits and _, not first a digit)",
        f"{path}:6 aws.secrets.DBT_COMMANDS: dbt-scheduler sets DBT_COMMANDS in every task itself: "
        "give the secret another name",
        f"{path}:7 aws.secrets.PLAIN: '/dbt/snowflake_password' is a name, not an ARN: give the full ARN, "
        "arn:aws:ssm:REGION:ACCOUNT:parameter/dbt/snowflake_password or "
        "arn:aws:secretsmanager:REGION:ACCOUNT:secret:dbt/snowflake_password "
        "(the execution role's policy names the exact resources it may read)",
        f"{path}:8 aws.secrets.WRONG_SERVICE: 'arn:aws:s3:::bucket/pw' names a resource of s3: ECS reads "
        f"secrets from SSM Parameter Store ({PARAMETER_ARN}) or Secrets Manager ({SECRET_ARN})",
        f"{path}:9 aws.secrets.JSON_KEY_ALONE: '{SECRET_ARN}:password': after the secret's name ECS takes "
        ":JSON-KEY:VERSION-STAGE:VERSION-ID, all three (an empty one keeps its colon), "
        f"e.g. {SECRET_ARN}:password::",
        f"{path}:10 aws.secrets.NUMBER: must be the ARN of an SSM parameter or Secrets Manager secret, got 5",
        f"{path}:11 aws.kms_key: 'arn:aws:kms:eu-west-1:123456789012:alias/dbt' is an alias ARN: kms:Decrypt "
        "is authorised on the key an alias points to, never on the alias, so give the key's ARN "
        "(aws kms describe-key --key-id alias/NAME --query KeyMetadata.Arn prints it)",
    ]


def test_aws_secrets_must_be_a_mapping_and_a_name_is_given_once(tmp_path: Path) -> None:
    listed = write(tmp_path, f"aws:\n  region: eu-west-1\n  secrets: [{PARAMETER_ARN}]\njobs: {{}}\n")
    [error] = errors_of(listed)
    assert error.startswith(f"{listed}:3 aws.secrets: must be a mapping of variable name → ARN, e.g. ")
    twice = write(
        tmp_path,
        f"aws:\n  region: eu-west-1\n  secrets:\n    PW: {PARAMETER_ARN}\n    PW: {SECRET_ARN}\njobs: {{}}\n",
    )
    [error] = errors_of(twice)
    assert "aws.secrets.PW" in error and "duplicate key" in error and ":5" in error, error


def test_a_kms_key_without_secrets_decrypts_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, f"aws:\n  region: eu-west-1\n  kms_key: {KEY_ARN}\njobs: {{}}\n")
    assert errors_of(path) == [
        f"{path}:3 aws.kms_key: nothing is decrypted with it: it is the key aws.secrets are encrypted "
        "with — set aws.secrets, or remove aws.kms_key"
    ]


def test_an_ecs_jobs_env_may_not_set_a_name_aws_secrets_sets(tmp_path: Path, project: Path) -> None:
    """ECS refuses a name that is both a secret and an environment variable of the container; a
    local job's env is its own business (aws.secrets reach ECS tasks only)."""
    path = write(
        tmp_path,
        f"""\
        aws:
          region: eu-west-1
          secrets: {{SNOWFLAKE_USER: {PARAMETER_ARN}}}
        defaults:
          env: {{SNOWFLAKE_USER: from_defaults}}
        jobs:
          on_ecs:
            schedule: '0 6 * * *'
            runner: ecs
            git: https://github.com/acme/shop.git
            env:
              SNOWFLAKE_USER: loader
          inherits:
            schedule: '0 6 * * *'
            runner: ecs
            git: https://github.com/acme/shop.git
          local:
            schedule: '0 6 * * *'
            project_dir: proj
        """,
    )
    message = (
        "is also in aws.secrets: a variable is either a secret of the task or in its environment, "
        "not both — remove one"
    )
    # Once where it is written: the job's own env, and defaults (which two jobs inherit).
    assert errors_of(path) == [
        f"{path}:12 jobs.on_ecs.env.SNOWFLAKE_USER: {message}",
        f"{path}:5 defaults.env.SNOWFLAKE_USER: {message}",
    ]
