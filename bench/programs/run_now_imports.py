"""The imports `run-now` does (lib + rich), and nothing else: bench/overhead.py times it.

argv: REPO.
"""

import importlib
import sys

sys.path.insert(0, sys.argv[1])
MODULES = (
    "lib.cli lib.app lib.config lib.execution lib.runners.local lib.report.console rich.console rich.table"
)
for name in MODULES.split():
    importlib.import_module(name)
