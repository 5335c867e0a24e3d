"""Goes through `scheduler.py run` up to the daemon loop, reports what is imported, stops.

argv: REPO CONFIG. Daemon.run_forever is replaced by a function that starts the
daemon, prints `PROBE {json}` (modules loaded, whether boto3/botocore/rich/dbt are
among them, the third-party packages, VmRSS) and shuts it down. bench/idle.py runs it
under `-X importtime`.
"""

import json
import sys

from _self import vmrss_kb

repo, config = sys.argv[1], sys.argv[2]
sys.path.insert(0, repo)
import lib.daemon  # noqa: E402  (after the path is set)


def report(self, until=None):
    if self._executor is None:  # `scheduler.py run` starts the daemon before its loop
        self.start()
    try:
        names = sorted({m.split(".")[0] for m in sys.modules})
        stdlib = sys.stdlib_module_names
        third = [n for n in names if n not in stdlib and n != "lib" and not n.startswith("_")]
        facts = {
            "modules": len(sys.modules),
            "boto3": "boto3" in sys.modules,
            "botocore": "botocore" in sys.modules,
            "rich": "rich" in sys.modules,
            "dbt": "dbt" in sys.modules,
            "third_party": third,
            "vmrss_kb": vmrss_kb(),
        }
        print("PROBE " + json.dumps(facts), flush=True)
    finally:
        self.shutdown()
    return 0


lib.daemon.Daemon.run_forever = report
from lib.cli import main  # noqa: E402

raise SystemExit(main(["--config", config, "run"]))
