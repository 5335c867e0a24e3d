"""`scheduler.py token …` and `scheduler.py audit`, through lib.cli.main and as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lib.cli import main
from lib.clock import SystemClock
from lib.history import History
from lib.web.tokens import PREFIX, TokenStore
from tests.dbt_helpers import REPO_ROOT


@pytest.fixture
def config(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: p\n")
    path = tmp_path / "jobs.yaml"
    path.write_text(f"jobs:\n  nightly: {{every: day, project_dir: {project}}}\n")
    return path


def cli(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def store(config: Path) -> TokenStore:
    return TokenStore(History(config.parent / "state" / "history.db"), SystemClock())


def test_create_prints_the_token_once_and_stores_only_its_hash(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = []
    for user in ("alice", "ci-bot"):
        code, out, err = cli(config, capsys, "token", "create", "--user", user, "--role", "operator")
        assert code == 0, err
        token = out.strip()
        assert token.startswith(PREFIX) and "\n" not in token  # stdout is the token alone: $(…) takes it
        assert err.count("\n") == 1 and "shown only this once" in err and token not in err
        assert f"for {user} (operator, jobs: *), expires in 90d" in err
        tokens.append(token)
        verified = store(config).verify(token)
        assert verified.ok and verified.token is not None and verified.token.user == user
    db = config.parent / "state" / "history.db"
    with History(db).transaction() as conn:
        dumped = "\n".join(conn.iterdump())
    assert not any(token in dumped or token[len(PREFIX) + 9 :] in dumped for token in tokens)


def test_list_shows_tokens_without_secrets_and_revoke_ends_one(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token, _ = cli(
        config, capsys, "token", "create", "--user", "bob", "--role", "viewer", "--jobs", "sales_*"
    )
    cli(config, capsys, "token", "create", "--user", "dora", "--role", "admin", "--expires", "never")
    code, out, _ = cli(config, capsys, "token", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(t["user"], t["role"], t["jobs"], t["state"]) for t in listed] == [
        ("dora", "admin", ["*"], "active"),
        ("bob", "viewer", ["sales_*"], "active"),
    ]  # newest first
    assert listed[0]["expires_at"] is None and listed[1]["expires_at"] is not None
    assert token.strip() not in out and "hash" not in out
    bob = next(t for t in listed if t["user"] == "bob")

    code, out, _ = cli(config, capsys, "token", "revoke", bob["id"])
    assert code == 0 and f"revoked token {bob['id']} for bob" in out
    assert store(config).verify(token.strip()).reason == "revoked"
    code, out, _ = cli(config, capsys, "token", "revoke", bob["id"])
    assert code == 0 and "already revoked" in out

    code, out, _ = cli(config, capsys, "token", "list")
    assert code == 0 and "revoked" in out and "bob" in out and PREFIX not in out


def test_revoking_an_unknown_token_exits_1_naming_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(config, capsys, "token", "revoke", "deadbeef")
    assert (code, out) == (1, "")
    assert err == "error: no token with id 'deadbeef': see `token list`\n"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--user", "a", "--role", "operator", "--expires", "forever"], "error: --expires: 'forever' is not"),
        (["--user", "a", "--role", "operator", "--expires", "400d"], "at most 366 days"),
        (["--user", " ", "--role", "operator"], "error: --user must be a name"),
    ],
)
def test_a_bad_create_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = cli(config, capsys, "token", "create", *args)
    assert (code, out) == (2, "") and message in err
    assert store(config).list() == []


def test_an_unknown_role_is_refused_by_argparse(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(config), "token", "create", "--user", "a", "--role", "root"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'root'" in capsys.readouterr().err


def test_audit_shows_what_token_commands_did_and_filters(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, token, _ = cli(config, capsys, "token", "create", "--user", "erin", "--role", "operator")
    info = store(config).list()[0]
    cli(config, capsys, "token", "revoke", info.id)
    code, out, _ = cli(config, capsys, "audit", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [(e["action"], e["source"], e["result"]) for e in entries] == [
        ("token_revoke", "cli", "allowed"),
        ("token_create", "cli", "allowed"),
    ]
    assert all(info.id in e["detail"] and "erin" in e["detail"] for e in entries)
    assert token.strip() not in out
    assert (
        json.loads(cli(config, capsys, "audit", "--json", "--limit", "1")[1])[0]["action"] == "token_revoke"
    )
    assert json.loads(cli(config, capsys, "audit", "--json", "--user", "nobody")[1]) == []
    assert json.loads(cli(config, capsys, "audit", "--json", "--job", "nightly")[1]) == []
    code, out, _ = cli(config, capsys, "audit")
    assert code == 0 and "token_create" in out and "token_revoke" in out


def test_token_create_as_a_process_gives_a_token_that_verifies(config: Path) -> None:
    for user in ("proc-a", "proc-b"):
        done = subprocess.run(
            [
                *(sys.executable, str(REPO_ROOT / "scheduler.py"), "--config", str(config)),
                *("token", "create", "--user", user, "--role", "viewer", "--expires", "1h"),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        verified = store(config).verify(done.stdout.strip())
        assert verified.ok and verified.token is not None and verified.token.user == user
