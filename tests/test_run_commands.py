"""docker/run_commands.sh end to end: real bash, real git over file://, real dbt.

Tests about the script's own mechanics (refs, parsing, exit codes, secrets) use the
millisecond `dbt` stand-in from tests/dbt_helpers.py; four tests run real dbt on
the example project (a passing build, a failing build, two commands without git).
"""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dbt_helpers import (
    DBT_BIN_DIR,
    EXAMPLE_DIR,
    RUN_COMMANDS,
    break_upstream,
    commit_all,
    copy_example,
    git,
    git_sha_marker,
    make_fake_dbt,
    make_git_remote,
    markers,
    run_script,
)

TOKEN = "ghp_s3cretT0kenValue1234567890"


@dataclass(frozen=True)
class Remote:
    url: str
    first_sha: str  # an old commit on main, reachable by SHA only (no branch or tag points at it)
    tagged_sha: str  # annotated tag v1
    main_sha: str  # tip of main, the default branch
    broken_sha: str  # tip of branch "broken": main + break_upstream
    monorepo_sha: str  # tip of branch "monorepo": the project moved to transform/shop


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Remote:
    tmp = tmp_path_factory.mktemp("remote")
    url, first = make_git_remote(tmp, EXAMPLE_DIR)
    work = tmp / "remote-work"
    readme = work / "README.md"

    readme.write_text(readme.read_text() + "\nRelease v1.\n")
    tagged = commit_all(work, "v1")
    git("tag", "-a", "v1", "-m", "release v1", cwd=work)
    readme.write_text(readme.read_text() + "\nAfter v1.\n")
    main = commit_all(work, "after v1")

    git("checkout", "-q", "-b", "broken", cwd=work)
    break_upstream(work)
    broken = commit_all(work, "duplicate order id")

    git("checkout", "-q", "-b", "monorepo", "main", cwd=work)
    (work / "transform").mkdir()
    for entry in sorted(p.name for p in work.iterdir() if p.name not in {".git", "transform"}):
        git("mv", entry, f"transform/{entry}", cwd=work)
    (work / "transform" / "shop").mkdir()
    for entry in sorted(p.name for p in (work / "transform").iterdir() if p.name != "shop"):
        git("mv", f"transform/{entry}", f"transform/shop/{entry}", cwd=work)
    monorepo = commit_all(work, "project moves to transform/shop")

    git("push", "-q", "origin", "main", "broken", "monorepo", "v1", cwd=work)
    return Remote(url, first, tagged, main, broken, monorepo)


@pytest.fixture(scope="module")
def fake_dbt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_dbt(tmp_path_factory.mktemp("fake-dbt"))


@pytest.fixture(scope="module")
def real_dbt() -> Path:
    if shutil.which("dbt", path=str(DBT_BIN_DIR)) is None:
        pytest.fail(f"no dbt next to {DBT_BIN_DIR}: pip install -r requirements-dev.txt into this venv")
    return DBT_BIN_DIR


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "shop")


def fake_lines(output: str, kind: str) -> list[str]:
    prefix = f"FAKE_DBT {kind} "
    return [line[len(prefix) :] for line in output.splitlines() if line.startswith(prefix)]


def fake_env(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in fake_lines(output, "ENV"))


def assert_ends_with_exit(output: str, code: int) -> None:
    assert output.rstrip("\n").splitlines()[-1] == f"[run_commands] EXIT {code}", output


def run_results(path: Path) -> dict[str, str]:
    """unique_id → status from a run_results.json."""
    return {r["unique_id"]: r["status"] for r in json.loads(path.read_text())["results"]}


# --- fetching code -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (None, "main_sha"),
        ("main", "main_sha"),
        ("broken", "broken_sha"),
        ("v1", "tagged_sha"),
        ("<first_sha>", "first_sha"),
    ],
    ids=["default-branch", "branch-main", "branch-broken", "annotated-tag", "commit-sha"],
)
def test_clone_checks_out_the_ref_and_prints_its_sha(
    remote: Remote, fake_dbt: Path, tmp_path: Path, ref: str | None, expected: str
) -> None:
    env = {"DBT_GIT_URL": remote.url, "DBT_RUN_DIR": str(tmp_path / "run")}
    if ref is not None:
        env["DBT_GIT_REF"] = remote.first_sha if ref == "<first_sha>" else ref

    done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)

    assert done.returncode == 0, done.stdout
    assert git_sha_marker(done.stdout) == getattr(remote, expected)
    clone = tmp_path / "run" / "project"
    assert git("rev-parse", "HEAD", cwd=clone) == getattr(remote, expected)
    # dbt runs in the run's work area (relative profile paths land there) and finds
    # the clone through DBT_PROJECT_DIR.
    assert fake_lines(done.stdout, "CWD") == [str(tmp_path / "run")]
    assert fake_env(done.stdout)["DBT_PROJECT_DIR"] == str(clone)
    assert markers(done.stdout) == [
        f"STEP fetch: git fetch --depth 1 {remote.url} {env.get('DBT_GIT_REF', '(default branch)')} "
        f"into {clone}",
        f"GIT_SHA {getattr(remote, expected)}",
        "STEP deps: skipped (no packages.yml or dependencies.yml)",
        "STEP command 1/1: dbt build",
        f"STEP artifacts: DBT_ARTIFACTS_DIR not set; artifacts stay in {tmp_path / 'run' / 'target'}",
        "EXIT 0",
    ]
    assert_ends_with_exit(done.stdout, 0)


def test_clone_with_subdir_runs_in_the_project_folder(remote: Remote, fake_dbt: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {
        "DBT_GIT_URL": remote.url,
        "DBT_GIT_REF": "monorepo",
        "DBT_GIT_SUBDIR": "transform/shop",
        "DBT_RUN_DIR": str(run),
    }

    done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)

    assert done.returncode == 0, done.stdout
    assert git_sha_marker(done.stdout) == remote.monorepo_sha
    project_dir = run / "project" / "transform" / "shop"
    assert fake_lines(done.stdout, "CWD") == [str(run)]
    assert fake_env(done.stdout) == {
        # dbt reads DBT_PROJECT_DIR itself: it must name the clone, not the caller's folder.
        "DBT_PROJECT_DIR": str(project_dir),
        # The project ships a profiles.yml and the caller set no DBT_PROFILES_DIR.
        "DBT_PROFILES_DIR": str(project_dir),
        "DBT_TARGET_PATH": str(run / "target"),
        "DBT_LOG_PATH": str(run / "logs"),
        "DBT_RUN_DIR": str(run),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"DBT_GIT_REF": "nope"},
            "ERROR git fetch of ref 'nope' from {url} failed: no such branch, tag or commit; "
            "check DBT_GIT_REF (jobs.nightly.git.ref; a commit needs its full 40-hex SHA)",
        ),
        (
            {"DBT_GIT_REF": "0123456789abcdef0123456789abcdef01234567"},
            "ERROR git fetch of ref '0123456789abcdef0123456789abcdef01234567' from {url} failed",
        ),
        (
            {"DBT_GIT_SUBDIR": "transform/shop"},
            "ERROR no dbt_project.yml in 'transform/shop' of {url} at {main_sha}: "
            "check DBT_GIT_SUBDIR (jobs.nightly.git.subdir",
        ),
    ],
    ids=["unknown-ref", "unknown-sha", "missing-subdir"],
)
def test_fetch_failures_exit_11_with_an_error_naming_the_setting(
    remote: Remote, fake_dbt: Path, tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    env = {
        "DBT_GIT_URL": remote.url,
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "DBT_SCHEDULER_JOB": "nightly",
        **extra,
    }

    done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)

    assert done.returncode == 11, done.stdout
    errors = [m for m in markers(done.stdout) if m.startswith("ERROR ")]
    assert len(errors) == 1
    assert errors[0].startswith(message.format(url=remote.url, main_sha=remote.main_sha))
    assert "FAKE_DBT" not in done.stdout
    assert_ends_with_exit(done.stdout, 11)


class _RecordingGitServer(http.server.BaseHTTPRequestHandler):
    """Answers every request 404 (no such repository) and records its headers."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def git_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_RecordingGitServer,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def git_argv_log(tmp_path: Path) -> tuple[Path, Path]:
    """A `git` shim (bin dir, log): records every argv the script passes to git."""
    real_git = shutil.which("git")
    assert real_git is not None
    bin_dir = tmp_path / "git-shim"
    bin_dir.mkdir()
    log = tmp_path / "git-argv.log"
    shim = bin_dir / "git"
    shim.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >>"{log}"\nexec "{real_git}" "$@"\n')
    shim.chmod(0o755)
    return bin_dir, log


def test_token_goes_to_the_server_as_a_header_but_never_to_output_or_argv(
    fake_dbt: Path,
    tmp_path: Path,
    git_server: tuple[str, list[dict[str, str]]],
    git_argv_log: tuple[Path, Path],
) -> None:
    base_url, seen = git_server
    shim_dir, argv_log = git_argv_log
    env = {
        "DBT_GIT_URL": f"{base_url}/shop.git",
        "DBT_ENV_SECRET_GIT_TOKEN": TOKEN,
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "PATH": f"{shim_dir}:{fake_dbt}:/usr/bin:/bin",
    }

    done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)

    assert done.returncode == 11, done.stdout
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert seen, "git never reached the server"
    assert {h.get("authorization") for h in seen} == {f"Basic {basic}"}
    assert TOKEN not in done.stdout and basic not in done.stdout
    argv = argv_log.read_text()
    assert "fetch" in argv
    assert TOKEN not in argv and basic not in argv
    assert TOKEN not in (tmp_path / "run" / "project" / ".git" / "config").read_text()
    assert [m for m in markers(done.stdout) if m.startswith("ERROR ")] == [
        f"ERROR git fetch of the default branch from {base_url}/shop.git failed: check DBT_GIT_URL "
        "(jobs.<job>.git.url), the network and DBT_ENV_SECRET_GIT_TOKEN"
    ]
    assert_ends_with_exit(done.stdout, 11)


def test_credentials_in_the_url_are_never_printed(
    fake_dbt: Path,
    tmp_path: Path,
    git_server: tuple[str, list[dict[str, str]]],
    git_argv_log: tuple[Path, Path],
) -> None:
    base_url, _ = git_server
    shim_dir, argv_log = git_argv_log
    url = base_url.replace("http://", "http://someone:hunter2pass@") + "/shop.git"
    env = {
        "DBT_GIT_URL": url,
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "PATH": f"{shim_dir}:{fake_dbt}:/usr/bin:/bin",
    }

    done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)

    assert done.returncode == 11, done.stdout
    assert "hunter2pass" not in done.stdout
    assert f"{base_url}/shop.git" in done.stdout
    assert "hunter2pass" not in argv_log.read_text()


# --- DBT_COMMANDS ---------------------------------------------------------------------


def test_command_lines_are_split_like_a_shell_without_expansion(
    project: Path, fake_dbt: Path, tmp_path: Path
) -> None:
    commands = "\n".join(
        [
            """dbt build --select "tag:nightly" --vars '{"x": 1}'""",
            "",
            "# a comment line",
            """  dbt run-operation greet --args "{msg: \\"hi \\$there\\"}" --select path:models/* # note""",
            "dbt test --select it\\'s\r",
        ]
    )
    env = {"DBT_PROJECT_DIR": str(project), "DBT_RUN_DIR": str(tmp_path / "run"), "DBT_COMMANDS": commands}

    done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)

    assert done.returncode == 0, done.stdout
    assert fake_lines(done.stdout, "ARGV") == [
        """<build> <--select> <tag:nightly> <--vars> <{"x": 1}>""",
        """<run-operation> <greet> <--args> <{msg: "hi $there"}> <--select> <path:models/*>""",
        "<test> <--select> <it's>",
    ]
    assert [m for m in markers(done.stdout) if m.startswith("STEP command")] == [
        """STEP command 1/3: dbt build --select "tag:nightly" --vars '{"x": 1}'""",
        """STEP command 2/3: dbt run-operation greet --args "{msg: \\"hi \\$there\\"}" """
        "--select path:models/* # note",
        "STEP command 3/3: dbt test --select it\\'s",
    ]


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        ("dbt build\nls -la", "ERROR DBT_COMMANDS line 2 does not start with 'dbt': ls -la"),
        ("dbtx build", "ERROR DBT_COMMANDS line 1 does not start with 'dbt'"),
        ("dbt run; touch pwned", "ERROR DBT_COMMANDS line 1 cannot be parsed (shell syntax ';'"),
        ("dbt run $(touch pwned)", "ERROR DBT_COMMANDS line 1 cannot be parsed (shell syntax '$'"),
        ('dbt run --vars "{x: `touch pwned`}"', "ERROR DBT_COMMANDS line 1 cannot be parsed ('`' inside"),
        ("dbt run --select 'open", "ERROR DBT_COMMANDS line 1 cannot be parsed (unterminated ' quote)"),
        ("# nothing but a comment\n", "ERROR DBT_COMMANDS has no command"),
    ],
    ids=["not-dbt", "dbt-prefix", "semicolon", "substitution", "backtick", "open-quote", "no-command"],
)
def test_bad_command_lines_exit_10_before_anything_runs(
    project: Path, fake_dbt: Path, tmp_path: Path, commands: str, message: str
) -> None:
    env = {
        "DBT_PROJECT_DIR": str(project),
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "DBT_COMMANDS": commands,
        "DBT_SCHEDULER_JOB": "nightly",
    }

    done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)

    assert done.returncode == 10, done.stdout
    (error,) = [m for m in markers(done.stdout) if m.startswith("ERROR ")]
    assert error.startswith(message)
    assert "FAKE_DBT" not in done.stdout and "STEP fetch" not in done.stdout
    assert not (tmp_path / "pwned").exists()
    assert_ends_with_exit(done.stdout, 10)


def test_commands_run_in_order_and_stop_at_the_first_failure(
    project: Path, fake_dbt: Path, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    env = {
        "DBT_PROJECT_DIR": str(project),
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "DBT_ARTIFACTS_DIR": str(artifacts),
        "DBT_COMMANDS": "dbt seed\ndbt fail 3\ndbt run",
    }

    done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)

    assert done.returncode == 3, done.stdout
    assert fake_lines(done.stdout, "ARGV") == ["<seed>", "<fail> <3>"]
    steps = [m for m in markers(done.stdout) if m.startswith("STEP")]
    assert steps[-4:] == [
        "STEP command 1/3: dbt seed",
        "STEP command 2/3: dbt fail 3",
        f"STEP artifacts: copying run_results.json and manifest.json to {artifacts}",
        "STEP artifacts: copied nothing (dbt wrote no artifacts)",
    ]
    assert_ends_with_exit(done.stdout, 3)


@pytest.mark.parametrize(
    ("commands", "allowed", "expected_exit", "ran"),
    [
        ("dbt fail 1\ndbt run", "1", 0, ["<fail> <1>", "<run>"]),  # freshness fails, build goes on
        ("dbt seed\ndbt fail 2", "2", 0, ["<seed>", "<fail> <2>"]),  # the last one may fail too
        ("dbt fail 1\ndbt fail 4\ndbt run", "1", 4, ["<fail> <1>", "<fail> <4>"]),  # only the allowed one
    ],
)
def test_allowed_failures_let_the_next_command_run(
    project: Path,
    fake_dbt: Path,
    tmp_path: Path,
    commands: str,
    allowed: str,
    expected_exit: int,
    ran: list[str],
) -> None:
    env = {
        "DBT_PROJECT_DIR": str(project),
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "DBT_COMMANDS": commands,
        "DBT_ALLOW_FAILURE": allowed,
    }
    for _ in range(2):
        done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)
        assert done.returncode == expected_exit, done.stdout
        assert fake_lines(done.stdout, "ARGV") == ran
        assert f"WARNING failed (exit {allowed}) but allowed to fail: going on" in done.stdout
        assert_ends_with_exit(done.stdout, expected_exit)


def test_each_commands_freshness_results_and_the_commit_are_kept(tmp_path: Path, fake_dbt: Path) -> None:
    """sources.json (dbt source freshness) is kept per command like run_results.json; git_sha too."""
    project = copy_example(tmp_path / "shop")
    git("init", "-q", cwd=project)
    sha = commit_all(project, "shop")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A dbt that writes sources.json, as `dbt source freshness` does.
    (bin_dir / "dbt").write_text(
        "#!/usr/bin/env bash\n"
        'mkdir -p "$DBT_TARGET_PATH"\n'
        'echo "{\\"by\\": \\"$*\\"}" >"$DBT_TARGET_PATH/sources.json"\n'
    )
    (bin_dir / "dbt").chmod(0o755)
    artifacts = tmp_path / "artifacts"
    env = {
        "DBT_PROJECT_DIR": str(project),
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "DBT_ARTIFACTS_DIR": str(artifacts),
        "DBT_COMMANDS": "dbt source freshness\ndbt source freshness --select source:raw",
    }
    for _ in range(2):
        done = run_script(env, tmp_path, dbt_bin_dir=bin_dir)
        assert done.returncode == 0, done.stdout
        assert json.loads((artifacts / "sources.1.json").read_text()) == {"by": "source freshness"}
        assert json.loads((artifacts / "sources.2.json").read_text())["by"].endswith("source:raw")
        assert (artifacts / "sources.json").read_text() == (artifacts / "sources.2.json").read_text()
        assert (artifacts / "git_sha").read_text() == f"{sha}\n"


# --- setup steps and their exit codes ----------------------------------------------------


@pytest.mark.parametrize(("deps_exit", "expected"), [(0, 0), (2, 12)])
def test_deps_runs_when_the_project_has_packages(
    project: Path, fake_dbt: Path, tmp_path: Path, deps_exit: int, expected: int
) -> None:
    (project / "packages.yml").write_text("packages: []\n")
    env = {
        "DBT_PROJECT_DIR": str(project),
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "FAKE_DBT_DEPS_EXIT": str(deps_exit),
    }

    done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)

    assert done.returncode == expected, done.stdout
    assert "STEP deps: dbt deps" in markers(done.stdout)
    argv = fake_lines(done.stdout, "ARGV")
    if expected == 0:
        assert argv == ["<deps>", "<build>"]
    else:
        assert argv == ["<deps>"]
        assert f"ERROR dbt deps failed (exit {deps_exit}): check packages.yml / dependencies.yml" in " ".join(
            markers(done.stdout)
        )
    assert_ends_with_exit(done.stdout, expected)


def test_project_dir_defaults_to_the_working_directory(project: Path, fake_dbt: Path, tmp_path: Path) -> None:
    done = run_script({"DBT_RUN_DIR": str(tmp_path / "run")}, project, dbt_bin_dir=fake_dbt)

    assert done.returncode == 0, done.stdout
    assert fake_env(done.stdout)["DBT_PROJECT_DIR"] == str(project)

    elsewhere = run_script({"DBT_RUN_DIR": str(tmp_path / "run2")}, tmp_path, dbt_bin_dir=fake_dbt)

    assert elsewhere.returncode == 10, elsewhere.stdout
    assert f"ERROR no dbt_project.yml in '{tmp_path}': set DBT_PROJECT_DIR" in elsewhere.stdout


def test_dbt_missing_from_path_exits_127(project: Path, tmp_path: Path) -> None:
    if shutil.which("dbt", path="/usr/bin:/bin"):
        pytest.skip("this machine has a system-wide dbt")
    env = {"DBT_PROJECT_DIR": str(project), "PATH": "/usr/bin:/bin"}

    done = run_script(env, tmp_path)

    assert done.returncode == 127, done.stdout
    assert "ERROR dbt is not on PATH" in done.stdout
    assert_ends_with_exit(done.stdout, 127)


@pytest.mark.parametrize("recorded_root", ["same", "elsewhere", None])
def test_partial_parse_state_is_reused_only_for_the_same_project_root(
    project: Path, fake_dbt: Path, tmp_path: Path, recorded_root: str | None
) -> None:
    """dbt's parse state holds absolute paths: a cache saved for a project elsewhere
    (an older clone, a moved project_dir) or with no recorded root is not restored."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "partial_parse.msgpack").write_text("from the last run\n")
    if recorded_root is not None:
        root = project.resolve() if recorded_root == "same" else tmp_path / "old-clone"
        (cache / "project_root").write_text(f"{root}\n")
    env = {
        "DBT_PROJECT_DIR": str(project),
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "DBT_PARTIAL_PARSE_CACHE": str(cache),
    }

    for _ in range(2):
        done = run_script(env, tmp_path, dbt_bin_dir=fake_dbt)
        assert done.returncode == 0, done.stdout
        expected = ["from the last run"] if recorded_root == "same" else []
        assert fake_lines(done.stdout, "PARTIAL_PARSE") == expected
        assert (cache / "partial_parse.msgpack").read_text() == "written by build\n"
        assert (cache / "project_root").read_text() == f"{project.resolve()}\n"
        # Saved through a temporary file and a rename: nothing else is left behind.
        assert sorted(p.name for p in cache.iterdir()) == ["partial_parse.msgpack", "project_root"]
        # From the second run on, the cache is this project's own.
        recorded_root = "same"
        (cache / "partial_parse.msgpack").write_text("from the last run\n")


def test_sigterm_stops_dbt_and_still_ends_with_the_exit_marker(
    project: Path, fake_dbt: Path, tmp_path: Path
) -> None:
    """`docker stop` / ECS StopTask send SIGTERM to the script (PID 1 in a container)."""
    log = tmp_path / "out.log"
    env = {
        "DBT_PROJECT_DIR": str(project),
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "DBT_COMMANDS": "dbt sleep 60",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", str(RUN_COMMANDS)],
            cwd=tmp_path,
            env={"PATH": f"{fake_dbt}:/usr/bin:/bin", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while "FAKE_DBT ARGV <sleep>" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    output = log.read_text()
    assert code == 143, output
    assert "ERROR received SIGTERM: stopping dbt; the run was cancelled" in markers(output)
    assert_ends_with_exit(output, 143)


# --- real dbt ----------------------------------------------------------------------------


def test_passing_build_copies_artifacts_and_reports_one_warning(
    remote: Remote, real_dbt: Path, tmp_path: Path
) -> None:
    run, artifacts, cache = tmp_path / "run", tmp_path / "artifacts", tmp_path / "cache"
    env = {
        "DBT_GIT_URL": remote.url,
        "DBT_RUN_DIR": str(run),
        "DBT_ARTIFACTS_DIR": str(artifacts),
        "DBT_PARTIAL_PARSE_CACHE": str(cache),
    }

    done = run_script(env, tmp_path, dbt_bin_dir=real_dbt)

    assert done.returncode == 0, done.stdout
    assert git_sha_marker(done.stdout) == remote.main_sha
    assert "PASS=24 WARN=1 ERROR=0 SKIP=0" in done.stdout
    assert sorted(p.name for p in artifacts.iterdir()) == [
        "git_sha",
        "manifest.json",
        "run_results.1.json",
        "run_results.json",
    ]
    assert (artifacts / "git_sha").read_text() == f"{remote.main_sha}\n"
    statuses = run_results(artifacts / "run_results.json")
    warned = [uid for uid, status in statuses.items() if status == "warn"]
    assert len(warned) == 1 and warned[0].startswith("test.shop.not_null_stg_customers_email."), warned
    assert set(statuses.values()) == {"success", "pass", "warn"}
    # Everything dbt writes lands in this run's own folder, nothing in the clone.
    assert (run / "target" / "run_results.json").is_file()
    assert (run / "logs" / "dbt.log").is_file()
    assert (run / "shop.duckdb").is_file()
    assert not (run / "project" / "target").exists() and not (run / "project" / "logs").exists()
    assert (cache / "partial_parse.msgpack").stat().st_size > 0
    assert_ends_with_exit(done.stdout, 0)


def test_failing_upstream_test_skips_the_marts_and_keeps_the_artifacts(
    remote: Remote, real_dbt: Path, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    env = {
        "DBT_GIT_URL": remote.url,
        "DBT_GIT_REF": "broken",
        "DBT_RUN_DIR": str(tmp_path / "run"),
        "DBT_ARTIFACTS_DIR": str(artifacts),
    }

    done = run_script(env, tmp_path, dbt_bin_dir=real_dbt)

    assert done.returncode == 1, done.stdout
    assert git_sha_marker(done.stdout) == remote.broken_sha
    assert "PASS=16 WARN=1 ERROR=1 SKIP=7" in done.stdout
    statuses = run_results(artifacts / "run_results.json")
    failed = [uid for uid, status in statuses.items() if status == "fail"]
    assert len(failed) == 1 and failed[0].startswith("test.shop.unique_stg_orders_order_id.")
    assert statuses["model.shop.order_totals"] == "skipped"
    assert statuses["model.shop.customer_orders"] == "skipped"
    assert (artifacts / "manifest.json").is_file()
    assert_ends_with_exit(done.stdout, 1)


def test_project_dir_mode_runs_each_command_and_leaves_the_project_clean(
    project: Path, real_dbt: Path, tmp_path: Path
) -> None:
    run, artifacts = tmp_path / "run", tmp_path / "artifacts"
    env = {
        "DBT_PROJECT_DIR": str(project),
        "DBT_RUN_DIR": str(run),
        "DBT_ARTIFACTS_DIR": str(artifacts),
        "DBT_COMMANDS": "dbt seed --select raw_customers\ndbt run --select stg_customers",
    }

    done = run_script(env, tmp_path, dbt_bin_dir=real_dbt)

    assert done.returncode == 0, done.stdout
    assert git_sha_marker(done.stdout) is None  # a plain folder, not a git checkout
    # run_results.json is rewritten by each invocation: each command keeps its own copy.
    assert run_results(artifacts / "run_results.1.json") == {"seed.shop.raw_customers": "success"}
    assert run_results(artifacts / "run_results.2.json") == {"model.shop.stg_customers": "success"}
    assert run_results(artifacts / "run_results.json") == {"model.shop.stg_customers": "success"}
    leftovers = {"target", "logs", "dbt_packages", "package-lock.yml", "shop.duckdb"}
    assert not leftovers & {p.name for p in project.iterdir()}
    assert_ends_with_exit(done.stdout, 0)
