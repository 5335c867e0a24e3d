"""One fresh-process round of bench/scale.py: load + plan a big jobs.yaml, cold then warm.

argv: REPO JOBS_YAML. Imports lib.config, times `load_config(path)` and
`job.trigger.next_after(now)` for every job, does both again warm, then reads the file
with plain PyYAML alone. Prints one JSON object (times in seconds, VmRSS and peak RSS
in kB after the first load).
"""

import gc
import json
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _self import vmrss_kb

repo, path = sys.argv[1], Path(sys.argv[2])
started = time.perf_counter()
sys.path.insert(0, repo)
from lib.config import load_config  # noqa: E402  (timed: the import is part of the cost)

imported = time.perf_counter()
config = load_config(path)
loaded = time.perf_counter()
now = datetime.now(UTC)
nexts = [job.trigger.next_after(now) for job in config.jobs.values()]
planned = time.perf_counter()
peak_first = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss_first = vmrss_kb()
again = load_config(path)
loaded2 = time.perf_counter()
for job in again.jobs.values():
    job.trigger.next_after(now)
planned2 = time.perf_counter()
jobs = len(config.jobs)
earliest = min(nexts).isoformat() if nexts else None
del config, again, nexts
gc.collect()  # a big live heap slows PyYAML down (every GC pass walks it): start clean

import yaml  # noqa: E402  (the YAML read alone, for the split between PyYAML and the config layer)

text = path.read_text(encoding="utf-8")
before_yaml = time.perf_counter()
yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
yaml_s = time.perf_counter() - before_yaml
figures = {
    "jobs": jobs,
    "import_s": imported - started,
    "load_s": loaded - imported,
    "next_s": planned - loaded,
    "warm_load_s": loaded2 - planned,
    "warm_next_s": planned2 - loaded2,
    "yaml_only_s": yaml_s,
    "rss_kb_after_first": rss_first,
    "maxrss_kb_after_first": peak_first,
    "earliest": earliest,
}
print(json.dumps(figures))
