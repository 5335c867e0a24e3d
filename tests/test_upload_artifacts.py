"""docker/upload_artifacts.py and run_commands.sh's upload step, against a real moto server.

The uploader runs as the job image runs it: a separate python process that finds
the endpoint only through AWS_ENDPOINT_URL (boto3 reads it by itself), with dummy
credentials that must never show in its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.aws_helpers import REGION
from tests.dbt_helpers import REPO_ROOT, markers, run_script

UPLOADER = REPO_ROOT / "docker" / "upload_artifacts.py"
RUN_RESULTS = {"results": [{"unique_id": "model.shop.orders", "status": "success"}]}
MANIFEST = {"nodes": {}, "parent_map": {}}
# What the moto fixture puts in os.environ; none of it may appear in any output.
CREDENTIALS = ("testing",)


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    name = f"artifacts-{abs(hash(request.node.nodeid)) % 10**8}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def aws_env(moto_endpoint: str) -> dict[str, str]:
    """Only the standard variables: the uploader is told nothing else about moto."""
    return {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }


def upload(directory: Path, uri: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, str(UPLOADER), str(directory), uri],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def write_artifacts(directory: Path, manifest: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run_results.json").write_text(json.dumps(RUN_RESULTS))
    if manifest:
        (directory / "manifest.json").write_text(json.dumps(MANIFEST))
    (directory / "partial_parse.msgpack").write_bytes(b"\x00")  # never uploaded
    return directory


def stored(s3: Any, bucket: str, key: str) -> tuple[Any, str]:
    """(parsed body, ServerSideEncryption) of an object."""
    head = s3.head_object(Bucket=bucket, Key=key)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body), head.get("ServerSideEncryption")


def test_uploads_both_artifacts_encrypted_one_line_each(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    target = write_artifacts(tmp_path / "target")
    done = upload(target, f"s3://{bucket}/runs/nightly/r1", aws_env(moto_endpoint))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"upload_artifacts: uploaded run_results.json to s3://{bucket}/runs/nightly/r1/run_results.json",
        f"upload_artifacts: uploaded manifest.json to s3://{bucket}/runs/nightly/r1/manifest.json",
    ]
    assert stored(s3, bucket, "runs/nightly/r1/run_results.json") == (RUN_RESULTS, "AES256")
    assert stored(s3, bucket, "runs/nightly/r1/manifest.json") == (MANIFEST, "AES256")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == ["runs/nightly/r1/manifest.json", "runs/nightly/r1/run_results.json"]


def test_only_what_exists_is_uploaded_and_nothing_is_not_an_error(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    target = write_artifacts(tmp_path / "target", manifest=False)
    done = upload(target, f"s3://{bucket}", aws_env(moto_endpoint))
    assert done.returncode == 0, done.stderr
    assert stored(s3, bucket, "run_results.json") == (RUN_RESULTS, "AES256")

    empty = tmp_path / "empty"
    empty.mkdir()
    done = upload(empty, f"s3://{bucket}/x/", aws_env(moto_endpoint))
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "upload_artifacts: nothing to upload: no run_results.json, run_results.*.json, sources.json, "
        f"sources.*.json, manifest.json or git_sha in {empty}",
    )


def test_failure_is_one_line_without_credentials(tmp_path: Path, moto_endpoint: str) -> None:
    target = write_artifacts(tmp_path / "target")
    done = upload(target, "s3://no-such-bucket-here/p/", aws_env(moto_endpoint))
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    target = "s3://no-such-bucket-here/p/run_results.json"
    assert line.startswith(f"upload_artifacts: ERROR uploading run_results.json to {target} failed: ")
    assert "NoSuchBucket" in line or "does not exist" in line
    assert not any(secret in done.stdout + done.stderr for secret in CREDENTIALS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dir"], "usage: upload_artifacts.py DIR s3://bucket/prefix/"),
        (["dir", "https://bucket/x"], "'https://bucket/x' is not an s3:// URI"),
        (["dir", "s3:///x"], "'s3:///x' names no bucket"),
    ],
)
def test_bad_command_line_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, str(UPLOADER), *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.splitlines()) == 1


def test_each_commands_results_and_freshness_are_uploaded(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    """What run_commands.sh keeps per command, so an ECS run's report covers every command."""
    target = write_artifacts(tmp_path / "target")
    for name in ("run_results.1.json", "run_results.2.json", "sources.1.json", "sources.json"):
        (target / name).write_text(json.dumps(RUN_RESULTS))
    for run in ("r4", "r5"):
        done = upload(target, f"s3://{bucket}/runs/nightly/{run}/", aws_env(moto_endpoint))
        assert done.returncode == 0, done.stderr
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"runs/nightly/{run}/")["Contents"]
        assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == [
            "manifest.json",
            "run_results.1.json",
            "run_results.2.json",
            "run_results.json",
            "sources.1.json",
            "sources.json",
        ]
        assert stored(s3, bucket, f"runs/nightly/{run}/sources.1.json") == (RUN_RESULTS, "AES256")


def test_the_git_sha_file_is_uploaded_with_the_artifacts(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    sha = "1a2b3c4d5e6f708192a3b4c5d6e7f80912345678"
    target = write_artifacts(tmp_path / "target")
    (target / "git_sha").write_text(sha + "\n")  # what run_commands.sh writes
    done = upload(target, f"s3://{bucket}/runs/nightly/r2/", aws_env(moto_endpoint))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"upload_artifacts: uploaded git_sha to s3://{bucket}/runs/nightly/r2/git_sha"
    )
    head = s3.head_object(Bucket=bucket, Key="runs/nightly/r2/git_sha")
    assert (head["ServerSideEncryption"], head["ContentType"]) == ("AES256", "text/plain")
    body = s3.get_object(Bucket=bucket, Key="runs/nightly/r2/git_sha")["Body"].read()
    assert body.decode().strip() == sha

    # dbt died before writing anything: the SHA alone still says what ran.
    only_sha = tmp_path / "early"
    only_sha.mkdir()
    (only_sha / "git_sha").write_text(sha + "\n")
    done = upload(only_sha, f"s3://{bucket}/runs/nightly/r3/", aws_env(moto_endpoint))
    assert done.stdout.splitlines() == [
        f"upload_artifacts: uploaded git_sha to s3://{bucket}/runs/nightly/r3/git_sha"
    ]


# ---------------------------------------------------------------------------- run_commands.sh


def fake_dbt(bin_dir: Path, *, python_beside: bool) -> Path:
    """A `dbt` that writes run_results.json and manifest.json into DBT_TARGET_PATH and
    exits $FAKE_DBT_EXIT; with `python_beside`, a python3 with boto3 sits next to it
    (as in a venv, or the image's /opt/dbt/bin)."""
    bin_dir.mkdir(parents=True)
    dbt = bin_dir / "dbt"
    dbt.write_text(
        "#!/usr/bin/env bash\n"
        'mkdir -p "$DBT_TARGET_PATH"\n'
        f"echo '{json.dumps(RUN_RESULTS)}' >\"$DBT_TARGET_PATH/run_results.json\"\n"
        f"echo '{json.dumps(MANIFEST)}' >\"$DBT_TARGET_PATH/manifest.json\"\n"
        'exit "${FAKE_DBT_EXIT:-0}"\n'
    )
    dbt.chmod(0o755)
    if python_beside:
        (bin_dir / "python3").symlink_to(sys.executable)
    return bin_dir


def script_env(tmp_path: Path, moto_endpoint: str, uri: str, **extra: str) -> dict[str, str]:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "dbt_project.yml").write_text("name: shop\n")
    return {
        **aws_env(moto_endpoint),
        "DBT_PROJECT_DIR": str(project),
        "DBT_RUN_DIR": str(tmp_path / "work"),
        "DBT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "DBT_ARTIFACTS_S3_URI": uri,
        **extra,
    }


def test_run_commands_uploads_after_the_commands_even_when_dbt_failed(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    dbt_exit = 1  # a failed run is when the artifacts are wanted most
    uri = f"s3://{bucket}/dbt-scheduler/artifacts/nightly/r{dbt_exit}/"
    bin_dir = fake_dbt(tmp_path / "bin", python_beside=True)  # found next to dbt
    env = script_env(tmp_path, moto_endpoint, uri, FAKE_DBT_EXIT=str(dbt_exit))
    done = run_script(env, tmp_path, dbt_bin_dir=bin_dir, timeout=120)
    assert done.returncode == dbt_exit, done.stdout
    steps = markers(done.stdout)
    assert f"STEP artifacts: uploading to {uri}" in steps
    copied = next(i for i, m in enumerate(steps) if m.startswith("STEP artifacts: copied run_results.json"))
    assert steps.index(f"STEP artifacts: uploading to {uri}") > copied  # after the local copy
    assert f"upload_artifacts: uploaded manifest.json to {uri}manifest.json" in done.stdout.splitlines()
    prefix = uri.removeprefix(f"s3://{bucket}/")
    assert stored(s3, bucket, f"{prefix}run_results.json") == (RUN_RESULTS, "AES256")
    assert stored(s3, bucket, f"{prefix}manifest.json") == (MANIFEST, "AES256")
    assert not any("WARNING" in m for m in steps)


def test_run_commands_upload_failure_is_a_warning_not_the_exit_code(
    tmp_path: Path, moto_endpoint: str
) -> None:
    dbt_exit = 0  # dbt succeeded: the run must stay a success
    uri = "s3://no-such-bucket-here/x/"
    bin_dir = fake_dbt(tmp_path / "bin", python_beside=False)
    env = script_env(tmp_path, moto_endpoint, uri, FAKE_DBT_EXIT=str(dbt_exit), DBT_PYTHON=sys.executable)
    done = run_script(env, tmp_path, dbt_bin_dir=bin_dir, timeout=120)
    assert done.returncode == dbt_exit, done.stdout  # dbt's result is what counts
    warning = next(m for m in markers(done.stdout) if "WARNING" in m)
    assert warning.startswith(f"STEP artifacts: WARNING upload to {uri} failed (exit 1, {sys.executable}): ")
    assert "upload_artifacts: ERROR uploading run_results.json" in warning
    assert markers(done.stdout)[-1] == f"EXIT {dbt_exit}"
    assert (tmp_path / "artifacts" / "run_results.json").is_file()  # the local copy still happened


def test_run_commands_without_the_uri_uploads_nothing(tmp_path: Path, moto_endpoint: str) -> None:
    bin_dir = fake_dbt(tmp_path / "bin", python_beside=False)
    env = script_env(tmp_path, moto_endpoint, "")
    done = run_script(env, tmp_path, dbt_bin_dir=bin_dir, timeout=120)
    assert done.returncode == 0, done.stdout
    assert not any("uploading" in m for m in markers(done.stdout))


def test_secrets_in_the_artifacts_are_masked_before_upload(
    s3: Any, bucket: str, tmp_path: Path, moto_endpoint: str
) -> None:
    """A node message quoting a DBT_ENV_SECRET_* value of the task's environment (multi-line,
    with regex metacharacters) never reaches S3; run twice, as a task would each night."""
    secret = "-----BEGIN KEY-----\nAbC+/d3F(g)?h*1\n-----END KEY-----"
    results = {"results": [{"unique_id": "model.shop.orders", "status": "error", "message": f"bad {secret}"}]}
    env = {**aws_env(moto_endpoint), "DBT_ENV_SECRET_KEY": secret}
    for run in ("r1", "r2"):
        directory = tmp_path / run
        directory.mkdir()
        (directory / "run_results.json").write_text(json.dumps(results))
        done = upload(directory, f"s3://{bucket}/a/{run}/", env)
        assert done.returncode == 0, done.stderr
        body = s3.get_object(Bucket=bucket, Key=f"a/{run}/run_results.json")["Body"].read().decode()
        assert json.loads(body)["results"][0]["message"] == "bad *****"
        assert not any(line in body for line in secret.splitlines())
