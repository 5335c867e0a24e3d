"""Reports of a finished run: files in the run directory (files.py) and the
terminal (console.py, the only module that uses rich — and only when it prints).

Importing this package does not import rich.
"""

from __future__ import annotations

from lib.report.console import RunProgress, parse_marker, render_summary
from lib.report.files import record_to_dict, write_reports

__all__ = ["RunProgress", "parse_marker", "record_to_dict", "render_summary", "write_reports"]
