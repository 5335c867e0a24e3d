"""Step `image`: the ECR repository, and the job image built from docker/Dockerfile
and pushed as `:<git sha>` and `:latest`.

Every engine call goes through an `EngineRunner(argv, input)` so tests can stand in
for docker (moto has no registry to push to). The registry password from
ecr:GetAuthorizationToken is handed to `login --password-stdin` on stdin: it is
never on a command line (visible in `ps`) and never printed.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from lib.bootstrap.base import Plan, StepContext, StepResult, error_code
from lib.secrets import SecretMasker

NAME = "image"
DOCKERFILE = Path("docker") / "Dockerfile"


def run_engine(argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real engine: runs argv, stdin from `input`, output captured (shown only on failure)."""
    return subprocess.run(argv, input=input, text=True, capture_output=True, check=False)


def git_short_sha(repo_root: Path) -> str:
    """`git rev-parse --short HEAD` of the scheduler checkout; ValueError when it is not one."""
    try:
        out = subprocess.run(
            ["git", "-C", str(repo_root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise ValueError("git is not installed: the image is tagged with the checkout's commit") from None
    if out.returncode != 0:
        raise ValueError(f"{repo_root} is not a git checkout with a commit: cannot tag the image")
    return out.stdout.strip()


def _dirty(repo_root: Path) -> bool:
    out = subprocess.run(
        ["git", "-C", str(repo_root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool(out.stdout.strip())


def find_repository(ecr: Any, name: str) -> dict[str, Any] | None:
    """The ECR repository description, or None when it does not exist."""
    try:
        return dict(ecr.describe_repositories(repositoryNames=[name])["repositories"][0])
    except ClientError as exc:
        if error_code(exc) == "RepositoryNotFoundException":
            return None
        raise


def ensure_image(ctx: StepContext) -> StepResult:
    """Creates the ECR repository (scan on push) and builds and pushes the image.

    created = the repository was created (and the image pushed); updated = a new tag
    was pushed to an existing repository; unchanged = the git-SHA tag is already in
    ECR (describe_images) and --force was not given. Builds run `<engine> build -f
    docker/Dockerfile -t URI:SHA -t URI:latest <repo root>`, the engine being
    aws.engine (docker or podman).
    """
    settings = ctx.settings
    plan = Plan(NAME, ctx.dry_run)
    engine = settings.engine
    repo_root = ctx.repo_root
    if repo_root is None:
        return plan.fail(
            "this dbt-scheduler is an installed package, without docker/Dockerfile: build the image "
            "from a clone of the repository (`python scheduler.py bootstrap --only image` there)"
        )
    dockerfile = repo_root / DOCKERFILE
    if not dockerfile.is_file():
        return plan.fail(f"{dockerfile} not found: the image is built from docker/Dockerfile")
    try:
        sha = git_short_sha(repo_root)
    except ValueError as exc:
        return plan.fail(str(exc))
    if _dirty(repo_root):
        plan.warn(f"the checkout has uncommitted changes: the image tagged {sha} includes them")

    ecr = ctx.clients.ecr()
    repository = find_repository(ecr, settings.ecr_repository)
    if repository is None:
        plan.create(f"create ECR repository {settings.ecr_repository} (scan on push)")
        if not ctx.dry_run:
            repository = ecr.create_repository(
                repositoryName=settings.ecr_repository,
                imageScanningConfiguration={"scanOnPush": True},
            )["repository"]
    elif not repository.get("imageScanningConfiguration", {}).get("scanOnPush"):
        plan.change("turn on scan on push")
        if not ctx.dry_run:
            ecr.put_image_scanning_configuration(
                repositoryName=settings.ecr_repository, imageScanningConfiguration={"scanOnPush": True}
            )

    uri = (
        repository["repositoryUri"]
        if repository
        else f"{ctx.account()}.dkr.ecr.{settings.region}.amazonaws.com/{settings.ecr_repository}"
    )
    if repository is not None and _has_tag(ecr, settings.ecr_repository, sha) and not ctx.force:
        return plan.result(f"{uri}:{sha} already pushed (use --force to rebuild)")

    plan.change(f"build and push :{sha} and :latest with {engine}")
    if ctx.dry_run:
        if ctx.engine_runner is None and shutil.which(engine) is None:
            plan.warn(f"{engine} is not on PATH: install it or set aws.engine")
        return plan.result(f"{uri}:{sha}")

    runner = ctx.engine_runner or run_engine
    token = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(token["authorizationToken"]).decode("utf-8").partition(":")
    registry = str(token["proxyEndpoint"]).removeprefix("https://").removeprefix("http://")
    masker = SecretMasker([password])
    steps: list[tuple[str, list[str], str | None]] = [
        ("login", [engine, "login", "--username", user, "--password-stdin", registry], password),
        (
            "build",
            [
                engine,
                "build",
                "-f",
                str(dockerfile),
                "-t",
                f"{uri}:{sha}",
                "-t",
                f"{uri}:latest",
                str(repo_root),
            ],
            None,
        ),
        ("push", [engine, "push", f"{uri}:{sha}"], None),
        ("push", [engine, "push", f"{uri}:latest"], None),
    ]
    for what, argv, stdin in steps:
        ctx.say(f"image: {' '.join(argv[:2])} {argv[-1]}")
        try:
            done = runner(argv, stdin)
        except FileNotFoundError:
            return plan.fail(f"{engine} not found on PATH: install it or set aws.engine (docker or podman)")
        if done.returncode != 0:
            output = (done.stderr or "") + "\n" + (done.stdout or "")
            last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
            return plan.fail(f"{engine} {what} failed (exit {done.returncode}): {masker(last.strip())}")
    return plan.result(f"{uri}:{sha} and :latest pushed")


def _has_tag(ecr: Any, repository: str, tag: str) -> bool:
    try:
        images = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    except ClientError as exc:
        if error_code(exc) == "ImageNotFoundException":
            return False
        raise
    return bool(images)
