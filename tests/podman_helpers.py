"""A real container engine for the docker runner's tests: podman, rootful, no registry.

No registry is reachable, so the test image is built `FROM scratch` around a static
binary (tests/data/fake_entrypoint.c, `gcc -static`). Debian's podman 4.3 needs two
workarounds on these machines, given through a containers.conf in CONTAINERS_CONF
(CONTRIBUTING.md, "Behaviour of the tools": Containers): the runc runtime (crun fails) and explicit
default ulimits (setting the inherited rlimits fails with "operation not
permitted"). `run --init` needs catatonit. scripts/install_podman.sh installs all
three; without them the tests skip and say so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
ENTRYPOINT_SOURCE = DATA_DIR / "fake_entrypoint.c"
INSTALL_HINT = "run scripts/install_podman.sh (CI installs podman, runc and catatonit with it)"

CONTAINERS_CONF = """\
# Written by tests/podman_helpers.py. Debian's podman 4.3 on these machines:
[containers]
# podman copies the host's rlimits into the container by default, and setting
# them fails ("error setting rlimit type 7: operation not permitted").
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
# crun (podman's default) fails here; runc works.
runtime = "runc"
"""

# Where podman 4.3 looks for the `--init` binary besides PATH (containers.conf helper_binaries_dir).
_INIT_DIRS = ("/usr/libexec/podman", "/usr/local/libexec/podman", "/usr/lib/podman", "/usr/local/lib/podman")


class CompileError(RuntimeError):
    """The static entrypoint could not be compiled on this machine."""


def missing_reason() -> str | None:
    """Why podman-backed tests cannot run on this machine, or None when they can."""
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: {INSTALL_HINT}"
    if shutil.which("catatonit") is None and not any(Path(d, "catatonit").exists() for d in _INIT_DIRS):
        return f"catatonit (podman's --init) is not installed: {INSTALL_HINT}"
    if shutil.which("gcc") is None:
        return "gcc is not installed: the test image's entrypoint is a static C binary"
    return None


def engine_env(work_dir: Path) -> dict[str, str]:
    """The environment podman runs with in the tests: PATH and a CONTAINERS_CONF with the workarounds."""
    conf = work_dir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {"PATH": os.environ.get("PATH", os.defpath), "CONTAINERS_CONF": str(conf)}


def image_tag() -> str:
    """A local tag naming this version of the entrypoint's source."""
    digest = hashlib.sha256(ENTRYPOINT_SOURCE.read_bytes()).hexdigest()[:12]
    return f"localhost/dbt-scheduler-test:{digest}"


def build_test_image(work_dir: Path, env: dict[str, str]) -> str:
    """Compiles the fake entrypoint statically and builds the FROM-scratch image; returns its tag.

    Raises CompileError (no static libc?) or RuntimeError (podman) with the tool's output.
    """
    binary = work_dir / "entrypoint"
    try:
        _run(["gcc", "-static", "-O2", "-o", str(binary), str(ENTRYPOINT_SOURCE)], env, "gcc -static")
    except RuntimeError as exc:
        raise CompileError(f"{exc} (is libc6-dev installed?)") from None
    (work_dir / "Containerfile").write_text(
        'FROM scratch\nCOPY entrypoint /entrypoint\nENTRYPOINT ["/entrypoint"]\n'
    )
    tag = image_tag()
    _run(["podman", "build", "--quiet", "--tag", tag, str(work_dir)], env, "podman build")
    return tag


def remove_image(tag: str, env: dict[str, str]) -> None:
    subprocess.run(["podman", "rmi", "--force", tag], env=env, capture_output=True, check=False, timeout=60)


def container_exists(name: str, env: dict[str, str]) -> bool:
    done = subprocess.run(
        ["podman", "container", "exists", name], env=env, capture_output=True, check=False, timeout=60
    )
    return done.returncode == 0


@contextmanager
def docker_api(work_dir: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """`podman system service` on a socket in `work_dir`, for the docker CLI to talk to.

    Yields the docker CLI's environment (DOCKER_HOST pointing at the socket); stops
    the service, by its own pid, on exit. Raises RuntimeError if the socket does not
    appear within 15 s.
    """
    socket = work_dir / "podman.sock"
    log = work_dir / "podman-service.log"
    with open(log, "wb") as out:
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start: {log.read_text()[-500:]}")
            time.sleep(0.05)
        yield {**env, "DOCKER_HOST": f"unix://{socket}"}
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr or done.stdout}")
