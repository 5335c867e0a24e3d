"""Builds what the ECS daemon holds, one step at a time, with VmRSS after each step.

argv: REPO CONFIG TRACE (0 or 1). With TRACE=1 (a second, slower pass: tracemalloc
makes building the clients ~10x slower) tracemalloc runs from the step after the
scheduler's own modules: the memory still allocated at the end is charged to the
innermost frame outside the standard library (package, and file:line), and each
botocore data file to what loading it left allocated (botocore caches every file it
loads). Prints `AWS {"rows": [[name, VmRSS kB, modules], …], …}`.
"""

import contextlib
import importlib
import json
import sys
import sysconfig
import tracemalloc

from _self import vmrss_kb

repo, config, trace = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
sys.path.insert(0, repo)
rows = [("python itself", vmrss_kb(), len(sys.modules))]


def step(name, *modules):
    for module in modules:
        importlib.import_module(module)
    rows.append((name, vmrss_kb(), len(sys.modules)))


step(
    "scheduler modules (lib.cli lib.daemon lib.app lib.runners.local)",
    "lib.cli",
    "lib.daemon",
    "lib.app",
    "lib.runners.local",
)
files = []
if trace:
    tracemalloc.start(8)
    import botocore.loaders

    load = botocore.loaders.Loader.load_data_with_path

    def counted(self, name, *args, **kwargs):
        before = tracemalloc.get_traced_memory()[0]
        answer = load(self, name, *args, **kwargs)
        files.append((name, tracemalloc.get_traced_memory()[0] - before))
        return answer

    botocore.loaders.Loader.load_data_with_path = counted
step("lib.runners.ecs lib.aws.clients (botocore.exceptions)", "lib.runners.ecs", "lib.aws.clients")
from lib.app import build_app  # noqa: E402
from lib.config import load_config  # noqa: E402

app = build_app(load_config(config))
step("jobs.yaml (ECS jobs), build_app: EcsRunner, no client yet")
clients = app.service.runners["ecs"].clients
s = clients.settings
step("botocore.session botocore.client (a botocore client's imports)", "botocore.session", "botocore.client")
step("import boto3 (on top of botocore: boto3, s3transfer…)", "boto3")
clients.ecs()
step("boto3 Session + ecs client")
clients.logs()
step("logs client")
clients.s3()
step("s3 client")


def attempt(call, **kwargs):
    with contextlib.suppress(Exception):  # moto answers "not found": only the call's cost matters
        call(**kwargs)


arn = f"arn:aws:ecs:{s.region}:123456789012:task/{s.cluster}/0123456789abcdef0123456789abcdef"
attempt(clients.ecs().describe_tasks, cluster=s.cluster, tasks=[arn])
attempt(clients.logs().get_log_events, logGroupName=s.log_group, logStreamName="dbt/dbt/none", limit=200)
attempt(clients.s3().get_object, Bucket=s.bucket, Key="none/run_results.json")
step("first calls: describe_tasks, get_log_events, get_object")
step("summary printer after a run (rich)", "rich.console", "rich.table", "rich.text", "rich.markup")
out = {"rows": rows}
if trace:
    snapshot = tracemalloc.take_snapshot()
    stdlib = sysconfig.get_paths()["stdlib"]

    def outside(name):
        return not (name.startswith("<") or (name.startswith(stdlib) and "-packages" not in name))

    by_package, by_line = {}, {}
    for stat in snapshot.statistics("traceback"):
        frames = list(stat.traceback)[::-1]  # most recent first
        frame = next((f for f in frames if outside(f.filename)), frames[0])
        name = frame.filename
        if "-packages/" in name:
            rel = name.split("-packages/", 1)[1]
        elif name.startswith(repo):
            rel = name[len(repo) :].lstrip("/")
        else:
            rel = name.rsplit("/", 1)[-1]
        package = rel.split("/", 1)[0]
        by_package[package] = by_package.get(package, 0) + stat.size
        key = f"{rel}:{frame.lineno}"
        by_line[key] = by_line.get(key, 0) + stat.size
    out["packages"] = sorted(by_package.items(), key=lambda kv: -kv[1])[:8]
    out["lines"] = sorted(by_line.items(), key=lambda kv: -kv[1])[:8]
    out["files"] = sorted(files, key=lambda kv: -kv[1])[:8]
    out["traced_kb"] = sum(by_package.values()) // 1024
print("AWS " + json.dumps(out), flush=True)
