"""A moto server (`python -m moto.server`) on a free loopback port, for the ECS benchmarks.

No AWS is reachable here; the daemon and the programs talk to moto over HTTP with
dummy credentials and never read the caller's AWS settings.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _daemon import stop

REGION = "eu-west-1"


def aws_env(tmp: Path) -> dict[str, str]:
    """The caller's environment without DBT_SCHEDULER_*/AWS_* and with dummy credentials for moto;
    the AWS config and credential files point into `tmp` (absent), so no ~/.aws file is read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_SCHEDULER_", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(python: str, tmp: Path, env: dict[str, str]) -> Iterator[str]:
    """A moto server for the block: yields http://127.0.0.1:PORT; its log is tmp/moto.log."""
    for _attempt in range(3):  # another process may take the port between bind and listen
        port = free_port()
        with open(tmp / "moto.log", "ab") as log:  # the server keeps its own descriptor
            server = subprocess.Popen(
                [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            stop(server, name="moto")
            continue
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(server, timeout=10, name="moto")
        return
    raise SystemExit(f"the moto server did not start:\n{(tmp / 'moto.log').read_text()[-2000:]}")
