"""Imports what the daemon imports one step at a time, with VmRSS after each step.

argv: REPO CONFIG STEPS_JSON (a list of space-separated module names per step). A
step's delta is what it adds on top of the steps before it (a shared dependency is
charged to the first step that pulls it in). Last step: load jobs.yaml, build the
app, Daemon.start(). Prints `STEPS [[name, VmRSS kB, modules], …]`.
"""

import importlib
import json
import sys

from _self import vmrss_kb

repo, config, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, repo)
rows = [("python itself", vmrss_kb(), len(sys.modules))]
for step in steps:
    for name in step.split():
        importlib.import_module(name)
    rows.append((step, vmrss_kb(), len(sys.modules)))

from lib.app import build_app  # noqa: E402
from lib.config import load_config  # noqa: E402
from lib.daemon import Daemon  # noqa: E402

app = build_app(load_config(config))
daemon = Daemon(app.config, app.service, app.clock)
daemon.start()
rows.append(("load jobs.yaml, build app, Daemon.start()", vmrss_kb(), len(sys.modules)))
daemon.shutdown()
print("STEPS " + json.dumps(rows))
