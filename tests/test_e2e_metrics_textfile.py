"""The real daemon with `web.metrics_textfile`: the node_exporter textfile appears at start,
and on the way out it counts every run the daemon saw end (a stand-in run script, no dbt)."""

from __future__ import annotations

import signal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_helpers import history_rows, running_daemon, stand_in_project, wait_for

PASSING_RUN = 'echo "[run_commands] EXIT 0"\nexit 0\n'


def samples(path: Path) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(path.read_text())}


def test_the_daemon_keeps_the_metrics_textfile_for_node_exporter(tmp_path: Path) -> None:
    project, script = stand_in_project(tmp_path, PASSING_RUN)
    textfile = tmp_path / "textfile" / "dbt_scheduler.prom"
    config = tmp_path / "jobs.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"web: {{metrics_textfile: {textfile}}}\n"
        f"jobs:\n  tick: {{every: 1 second, project_dir: {project}}}\n"
    )
    with running_daemon(
        config, tmp_path / "daemon.log", {"DBT_SCHEDULER_RUN_COMMANDS": str(script)}
    ) as daemon:
        wait_for(textfile.exists, 30, "the textfile written at start")
        assert "dbt_scheduler_next_fire_timestamp_seconds" in samples(textfile)
        wait_for(lambda: len(history_rows(tmp_path / "state")) >= 3, 60, "three runs")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    ended = [r for r in history_rows(tmp_path / "state") if r["outcome"] == "succeeded"]
    families = samples(textfile)  # the last write, on the way out
    [count] = [s for s in families["dbt_scheduler_run_duration_seconds"] if s.name.endswith("_count")]
    assert count.labels == {"job": "tick"} and count.value == len(ended) >= 3
    runs = {s.labels["outcome"]: s.value for s in families["dbt_scheduler_runs"] if s.labels["job"] == "tick"}
    assert runs["succeeded"] == len(ended)
    assert not list(textfile.parent.glob("*.prom.*"))  # no temporary file left beside it
