"""A hostile or careless jobs.yaml: every case is a located ConfigError (exit 2), never a traceback.

Alias bombs, self-referencing aliases, deep nesting, huge files, duplicate keys, bytes that
are not UTF-8, numbers that overflow, NUL bytes, names that are not names and strings that
are not git URLs. Each is read through `load_config`, the way the CLI and SIGHUP read it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lib import yaml_limits
from lib.config import checks, load_config, reader
from lib.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "dbt_project.yml").write_text("name: p\n")
    return proj


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    messages = [str(issue) for issue in info.value.issues]
    assert all("\n" not in m for m in messages), messages  # one issue, one line
    return messages


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def job_file(tmp_path: Path, project: Path, extra: str = "", top: str = "") -> Path:
    """A valid one-job file, with `extra` lines inside the job and `top` lines before `jobs:`."""
    body = f"{top}jobs:\n  a:\n    every: 5 minutes\n    project_dir: {project}\n{extra}"
    return write(tmp_path, body)


BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi", strict=True)
)


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path, project: Path) -> None:
    path = job_file(tmp_path, project, top=BILLION_LAUGHS)
    [message] = errors_of(path)
    assert message.startswith(f"{path}:")
    assert "aliases expand to more than 2 000 000 nodes: alias/size budget exceeded" in message
    # Aliases within the budget still work: the same two jobs, one anchored mapping.
    path = write(
        tmp_path,
        f"defaults: &common {{every: 5 minutes, project_dir: {project}}}\njobs: {{a: *common, b: *common}}\n",
    )
    assert set(load_config(path).jobs) == {"a", "b"}


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path, project: Path) -> None:
    path = job_file(tmp_path, project, top="loop: &loop [1, *loop]\n")
    assert errors_of(path) == [
        f"{path}:1: an alias refers to a node that contains it: alias/size budget exceeded"
    ]


@pytest.mark.parametrize("anchor", ["", "x: &x 1\n"], ids=["plain", "with-anchor"])
def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path: Path, anchor: str) -> None:
    line = 1 + anchor.count("\n")
    for depth in (70, 900):  # 900: within libyaml's own limit, past Python's recursion in the readers
        path = write(tmp_path, anchor + "jobs: " + "[" * depth + "]" * depth + "\n")
        assert errors_of(path) == [f"{path}:{line}: nesting deeper than 64 levels: nesting budget exceeded"]


def test_a_file_past_the_size_budget_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(yaml_limits, "MAX_BYTES", 1024)
    path = write(tmp_path, "# padding\n" * 200)
    assert errors_of(path) == [f"{path}: the file is larger than 0 MiB: alias/size budget exceeded"]


@pytest.mark.parametrize("anchor", ["", "x: &x 1\n"], ids=["plain", "with-anchor"])
def test_duplicate_keys_at_any_depth_name_both_lines(tmp_path: Path, project: Path, anchor: str) -> None:
    shift = anchor.count("\n")
    path = job_file(tmp_path, project)
    path.write_text(
        anchor
        + textwrap.dedent(f"""\
        jobs:
          a:
            every: 5 minutes
            project_dir: {project}
            env: {{X: '1', X: '2'}}
          a:
            every: 1 hour
        jobs: {{}}
        """)
    )
    assert errors_of(path) == [
        f"{path}:{5 + shift} jobs.a.env.X: duplicate key 'X', first at line {5 + shift}: "
        "the second would silently replace the first; keep one",
        f"{path}:{6 + shift} jobs.a: duplicate key 'a', first at line {2 + shift}: "
        "the second would silently replace the first; keep one",
        f"{path}:{8 + shift} jobs: duplicate key 'jobs', first at line {1 + shift}: "
        "the second would silently replace the first; keep one",
    ]
    # Keys equal only as Python values are not written twice: PyYAML's dict, as before.
    path.write_text(anchor + "1: a\ntrue: b\n'1': c\n")
    data, _ = reader.read_yaml(path.read_text(), str(path))
    assert data == {**({"x": 1} if anchor else {}), 1: "b", "1": "c"}


def test_bytes_that_are_not_utf8_are_located_by_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_bytes(b"jobs:\n  a:\n    description: \xc3\xa9\xff\n")  # the column counts the \xc3\xa9 as one
    assert errors_of(path) == [f"{path}:3:19: not valid UTF-8 (byte 0xff): save the file as UTF-8"]
    path.write_bytes(bytes(range(256)) * 4)  # binary garbage
    [message] = errors_of(path)
    assert message.startswith(f"{path}:") and "not valid UTF-8" in message


@pytest.mark.parametrize(
    ("extra", "top", "where", "expected"),
    [
        ('    every: "99999999999999 weeks"\n', "", "jobs.a.every", "the number is too large"),
        ("    timeout: " + "9" * 40 + "\n", "", "jobs.a.timeout", "at most 366 days"),
        ("    timeout: " + "9" * 400 + "\n", "", "jobs.a.timeout", "at most 366 days"),
        ("    timeout: " + "9" * 400 + "s\n", "", "jobs.a.timeout", "at most 366 days"),
        ("    catchup_grace: 400 days\n", "", "jobs.a.catchup_grace", "at most 366 days"),
        ("", "max_parallel: " + "9" * 30 + "\n", "max_parallel", "from 1 to 1024"),
        ("", "shutdown_grace: " + "9" * 400 + "\n", "shutdown_grace", "at most 366 days"),
        ("", "retention: {keep_days: " + "9" * 30 + "}\n", "retention.keep_days", "(at most 36500)"),
        ("", "retention: {keep_failed_work: " + "9" * 30 + "}\n", "retention.keep_failed_work", "at most"),
    ],
)
def test_values_that_would_overflow_are_located_errors(
    tmp_path: Path, project: Path, extra: str, top: str, where: str, expected: str
) -> None:
    path = job_file(tmp_path, project, extra.replace("    every: 5 minutes\n", ""), top)
    if "every:" in extra:
        path.write_text(path.read_text().replace("    every: 5 minutes\n", "", 1))
    [message] = errors_of(path)
    assert f" {where}: " in message and expected in message, message
    assert len(message) < 300  # a 400-digit number is cut short, not echoed whole


@pytest.mark.parametrize(
    ("extra", "top", "where"),
    [
        ("", 'state_dir: "st\\0ate"\n', "state_dir"),
        ('    env_file: "x\\0y"\n', "", "jobs.a.env_file"),
        ('    profiles_dir: "\\0"\n', "", "jobs.a.profiles_dir"),
        ('    env: {X: "a\\0b"}\n', "", "jobs.a.env.X"),
        ('    commands: ["dbt build \\0"]\n', "", "jobs.a.commands[0]"),
        ('    target: "dev\\0"\n', "", "jobs.a.target"),
        ('    image: "img\\n"\n', "", "jobs.a.image"),
    ],
)
def test_nul_bytes_and_control_characters_are_config_errors(
    tmp_path: Path, project: Path, extra: str, top: str, where: str
) -> None:
    messages = errors_of(job_file(tmp_path, project, extra, top))
    assert any(f" {where}: " in m and ("NUL" in m or "control character" in m) for m in messages), messages


def test_a_nul_byte_in_project_dir_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'jobs:\n  a:\n    every: 5 minutes\n    project_dir: "pro\\0j"\n')
    assert (
        f"{path}:4 jobs.a.project_dir: contains a NUL byte, which no path can hold: remove it"
        in errors_of(path)
    )


def test_state_dir_must_be_a_path_without_nul(tmp_path: Path, project: Path) -> None:
    for value in ("[state]", "{a: 1}", "true", "5", "''", '"st\\0ate"'):
        [message] = errors_of(job_file(tmp_path, project, top=f"state_dir: {value}\n"))
        assert ":1 state_dir: must be a path (string), got " in message or "NUL byte" in message, message


def test_job_names_that_are_not_folder_names_are_refused(tmp_path: Path, project: Path) -> None:
    # A trailing newline slipped past `re.match(...$)`; the others are guards around it.
    for name in ('"a\\n"', '"a\\t"', '"a/b"', '"../up"', '"a\\\\b"', '"\\0"', '"-x"', "'" + "x" * 65 + "'"):
        path = write(tmp_path, f"jobs:\n  {name}:\n    every: 5 minutes\n    project_dir: {project}\n")
        [message] = errors_of(path)
        assert message.startswith(f"{path}:2 jobs.") and "job names use letters, digits" in message, name


def test_env_names_with_a_trailing_newline_are_refused(tmp_path: Path, project: Path) -> None:
    [message] = errors_of(job_file(tmp_path, project, '    env: {"X\\n": "1"}\n'))
    assert "jobs.a.env.X\\n: is not a valid environment variable name" in message


GOOD_URLS = [
    "https://github.com/acme/dbt.git",
    "http://git.internal/acme/dbt",
    "ssh://git@github.com/acme/dbt.git",
    "git://git.example.com/acme.git",
    "file:///srv/repo.git",
    "git@github.com:acme/dbt.git",
    "github.com:acme/dbt.git",
    "https://example.com/a?b=c#frag",
]
BAD_URLS = {
    "not a url": "whitespace",
    "https://": "names no host",
    "https:///acme/dbt": "names no host",
    "https://github.com": "names no repository path",
    "ftp://example.com/r.git": "scheme 'ftp'",
    "ext::sh -c touch% /tmp/x": "whitespace",
    "ext::sh": "is not a git URL",
    "file://host/srv/repo.git": "three slashes",
    "/srv/repo.git": "is not a git URL",
    "https://github.com/acme/dbt.git\n": "control character",
    "repo": "is not a git URL",
}


def test_git_urls_git_fetches_are_accepted_and_others_not(tmp_path: Path) -> None:
    for url in GOOD_URLS:
        path = write(tmp_path, f"jobs:\n  a:\n    every: 5 minutes\n    git: {{url: {url!r}}}\n")
        job = load_config(path).jobs["a"]
        assert job.git is not None and job.git.url == url
    path.write_text("jobs:\n  a:\n    every: 5 minutes\n    git: {url: 'not a url'}\n")
    assert len(errors_of(path)) == 1


@pytest.mark.parametrize("url", sorted(BAD_URLS))
def test_strings_that_are_not_git_urls_are_refused(tmp_path: Path, url: str) -> None:
    quoted = url.replace("\n", "\\n")
    path = write(tmp_path, f'jobs:\n  a:\n    every: 5 minutes\n    git:\n      url: "{quoted}"\n')
    [message] = errors_of(path)
    assert message.startswith(f"{path}:5 jobs.a.git.url: ") and BAD_URLS[url] in message, message


def test_a_git_url_check_can_be_added_through_the_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "GIT_URL_CHECKS", (*checks.GIT_URL_CHECKS, lambda url: "no example.com"))
    path = write(tmp_path, "jobs:\n  a:\n    every: 5 minutes\n    git: {url: 'https://example.com/r.git'}\n")
    assert errors_of(path) == [f"{path}:4 jobs.a.git.url: no example.com"]


def test_job_names_that_yaml_reads_as_null_bool_or_a_repeated_number_are_refused(
    tmp_path: Path, project: Path
) -> None:
    job = f"{{every: 5 minutes, project_dir: {project}}}"
    path = write(tmp_path, f"jobs:\n  ~: {job}\n  yes: {job}\n  2: {job}\n  '2': {job}\n")
    assert errors_of(path) == [
        f"{path}:1 jobs.None: None is not a job name: quote it, or use a name such as nightly",
        f"{path}:1 jobs.True: True is not a job name: quote it, or use a name such as nightly",
        f"{path}:5 jobs.2: two jobs have this name (once as a number, once as text): rename one",
    ]


def test_values_pyyaml_cannot_build_are_located(tmp_path: Path, project: Path) -> None:
    for value, reason in (
        ("2026-13-45", "month must be in 1..12"),
        ("!!int abc", "invalid literal for int()"),
    ):
        path = job_file(tmp_path, project, f"    description: {value}\n")
        [message] = errors_of(path)
        assert message.startswith(f"{path}:5: invalid value ") and reason in message, message
