"""A probe daemon: the real loop for a few seconds of ECS runs, then the clients it holds.

argv: REPO CONFIG SECONDS. Goes through `scheduler.py run` (the config's warm-up job
fires every couple of seconds), lets the real loop run for SECONDS, then counts the
botocore clients alive in the process (gc) and those the runner's AwsClients holds.
Prints `PROBE {json}`.
"""

import gc
import json
import sys
import weakref
from datetime import UTC, datetime, timedelta

from _self import vmrss_kb

repo, config, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
sys.path.insert(0, repo)
import lib.daemon  # noqa: E402  (after the path is set)

loop = lib.daemon.Daemon.run_forever


def report(self, until=None):
    loop(self, until=datetime.now(UTC) + timedelta(seconds=seconds))
    import botocore.client

    # botocore keeps weakref proxies to the s3 client (S3 Express): they pass isinstance.
    built = [
        o
        for o in gc.get_objects()
        if isinstance(o, botocore.client.BaseClient) and not isinstance(o, weakref.ProxyTypes)
    ]
    alive = sorted(o.meta.service_model.service_name for o in built)
    runs = [r for r in self.history.runs(limit=None) if r["outcome"] != "running" and r["external_id"]]
    facts = {
        "runs": len(runs),
        "outcomes": sorted({r["outcome"] for r in runs}),
        "clients_alive": alive,
        "clients_cached": sorted(self.service.runners["ecs"].clients._clients),
        "boto3": "boto3" in sys.modules,
        "rich": "rich" in sys.modules,
        "modules": len(sys.modules),
        "vmrss_kb": vmrss_kb(),
    }
    print("PROBE " + json.dumps(facts), flush=True)
    return 0


lib.daemon.Daemon.run_forever = report
from lib.cli import main  # noqa: E402

raise SystemExit(main(["--config", config, "run"]))
