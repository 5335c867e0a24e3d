"""Run history in SQLite at `<state_dir>/history.db`.

Every run is recorded, skipped ones included, with what triggered it. A run is
inserted as `running` when it starts (so `status` shows it and a later runner
can re-attach to work still in flight) and updated when it ends.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` takes a
database from version i to i+1, so an old history.db is upgraded in place.
Each call opens its own connection: the daemon's worker threads and a `run-now`
in another process write concurrently, which WAL mode and a busy timeout allow.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.errors import SchedulerError
from lib.models import RunRecord, RunRequest, TriggerKind, count_statuses
from lib.procs import start_time

RUNNING = "running"
log = logging.getLogger("dbt_scheduler")

MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        run_id        TEXT PRIMARY KEY,
        job           TEXT NOT NULL,
        trigger       TEXT NOT NULL,
        triggered_by  TEXT,
        scheduled_for TEXT,
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        duration_s    REAL,
        outcome       TEXT NOT NULL,
        exit_code     INTEGER,
        reason        TEXT,
        git_sha       TEXT,
        counts        TEXT,
        log_path      TEXT,
        log_url       TEXT,
        external_id   TEXT,
        run_dir       TEXT
    );
    CREATE INDEX runs_by_job ON runs (job, started_at);
    """,
    # 2: run-now overrides and the commands the run was given (JSON list), both
    # nullable: rows from before know neither.
    """
    ALTER TABLE runs ADD COLUMN target_override TEXT;
    ALTER TABLE runs ADD COLUMN select_override TEXT;
    ALTER TABLE runs ADD COLUMN commands TEXT;
    """,
    # 3: who runs a `running` row, so a restarted daemon can tell an orphan from a run
    # another scheduler still follows: the supervising scheduler's pid and the run's
    # own script pid (its process group), each with its start time from
    # /proc/<pid>/stat (a pid alone may have been reused), and a container's name.
    """
    ALTER TABLE runs ADD COLUMN supervisor_pid INTEGER;
    ALTER TABLE runs ADD COLUMN supervisor_start INTEGER;
    ALTER TABLE runs ADD COLUMN process_pid INTEGER;
    ALTER TABLE runs ADD COLUMN process_start INTEGER;
    ALTER TABLE runs ADD COLUMN container TEXT;
    """,
    # 4: the image a run ran (ECS: by digest), as report.json says it.
    """
    ALTER TABLE runs ADD COLUMN image TEXT;
    """,
    # 5: alerts (lib/notify/dispatcher.py): every delivery attempt's outcome, and what
    # each rule remembers of a job's last alert (de-duplication, repeat_every).
    """
    CREATE TABLE deliveries (
        id          INTEGER PRIMARY KEY,
        run_id      TEXT,
        job         TEXT NOT NULL,
        channel     TEXT NOT NULL,
        event       TEXT NOT NULL,
        status      TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        error       TEXT,
        at          TEXT NOT NULL
    );
    CREATE INDEX deliveries_by_run ON deliveries (run_id);
    CREATE INDEX deliveries_by_job ON deliveries (job, at);
    CREATE TABLE alert_state (
        rule         TEXT NOT NULL,
        job          TEXT NOT NULL,
        last_key     TEXT,
        last_sent_at TEXT,
        suppressed   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (rule, job)
    );
    """,
    # 6: team access (lib/web/): API tokens, of which only a SHA-256 hash is kept (never
    # the token), and the audit log of every mutation and refused request.
    """
    CREATE TABLE api_tokens (
        id           TEXT PRIMARY KEY,
        user         TEXT NOT NULL,
        role         TEXT NOT NULL,
        jobs         TEXT NOT NULL,
        hash         TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        expires_at   TEXT,
        last_used_at TEXT,
        revoked_at   TEXT
    );
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      TEXT NOT NULL,
        user    TEXT,
        source  TEXT NOT NULL,
        peer    TEXT,
        action  TEXT NOT NULL,
        job     TEXT,
        run_id  TEXT,
        result  TEXT NOT NULL,
        detail  TEXT
    );
    CREATE INDEX audit_by_time ON audit (at);
    CREATE INDEX audit_by_user ON audit (user, at);
    CREATE INDEX audit_by_job ON audit (job, at);
    """,
    # 7: the web UI's timeline reads the runs of a time window across every job, and
    # its pages ask for the running runs (a partial index: a scan of 100,000 rows took
    # 2 ms); jobs paused from the web UI stay paused across restarts.
    """
    CREATE INDEX runs_by_start ON runs (started_at);
    CREATE INDEX runs_running ON runs (outcome) WHERE outcome = 'running';
    CREATE TABLE paused_jobs (
        job       TEXT PRIMARY KEY,
        paused_by TEXT,
        paused_at TEXT NOT NULL
    );
    """,
    # 8: when each job's schedule was last resumed, so a restart's catch-up
    # (`catchup: latest`) never reaches back into the time it was paused.
    """
    CREATE TABLE resumed_jobs (
        job        TEXT PRIMARY KEY,
        resumed_at TEXT NOT NULL
    );
    """,
]
# The columns of migration 3: in `running()` rows, not in `history --json`.
PROCESS_COLUMNS = ("supervisor_pid", "supervisor_start", "process_pid", "process_start", "container")
SCHEMA_VERSION = len(MIGRATIONS)

# The columns `history --json` prints (with run_dir), named like report.json's keys.
COLUMNS = (
    "job",
    "run_id",
    "trigger",
    "triggered_by",
    "scheduled_for",
    "outcome",
    "exit_code",
    "reason",
    "started_at",
    "finished_at",
    "duration_s",
    "git_sha",
    "counts",
    "log_path",
    "log_url",
    "external_id",
    "target_override",
    "select_override",
    "commands",
    "image",
)


def _iso(moment: datetime | None) -> str | None:
    # Stored in UTC so that text order is time order.
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _str(value: object) -> str | None:
    return str(value) if value is not None else None


class History:
    """The run history store. Cheap to construct; the file is created on first use."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        # How long a write waits for another process's lock before it fails (sqlite's
        # busy timeout); injectable so a test of a busy database does not wait 30 s.
        self.timeout = timeout
        self._ready = False
        # One connection per thread, kept open: closing the last connection to a WAL
        # database checkpoints it and deletes the -wal file, ~2 ms of every history
        # write that sat between a due fire time and the run's process start.
        self._local = threading.local()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._replaced():
            # Deleted or replaced under us: writing on would go to an unlinked inode and
            # be lost. Say so once and open (and migrate) whatever is at the path now.
            log.error(
                "history: %s was deleted or replaced while the scheduler ran: "
                "runs from now on are recorded in the file now at that path",
                self.path,
            )
            self._local.conn = None
            conn.close()
            conn = None
            self._ready = False
        if conn is None:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout)
            conn.row_factory = sqlite3.Row
            # With WAL, NORMAL syncs at checkpoints instead of on every commit: still safe
            # against corruption, and it took the 5th of 5 runs starting in the same second
            # from ~38 ms to ~6 ms (bench/dispatch_latency.py): fsyncs queued behind each other.
            conn.execute("PRAGMA synchronous=NORMAL")
            if not self._ready:
                try:
                    self._migrate(conn)
                except BaseException:
                    conn.close()
                    raise
                self._ready = True
            self._local.conn = conn
            self._local.inode = _inode(self.path)
        with conn:
            yield conn

    def _replaced(self) -> bool:
        # One stat per write: microseconds, against losing every later row.
        return _inode(self.path) != getattr(self._local, "inode", None)

    def check(self) -> None:
        """Raise HistoryCorrupt when history.db exists but fails `PRAGMA quick_check`.

        A missing file is not an error (a new state_dir; it is created on first use).
        """
        if not self.path.exists():
            return
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.timeout)
            try:
                rows = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
            finally:
                conn.close()
        except sqlite3.OperationalError:
            # Busy, or "disk I/O error" on a full or read-only state_dir (no room for the
            # -shm file): not corruption. The writes report those on their own.
            return
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
            rows = [str(exc)]
        if rows != ["ok"]:
            # quick_check's findings can hold line breaks ("*** in database main ***\n Page
            # 14: …"): the first finding, on one line, and how many more, keep it one line.
            first = " ".join(str(rows[0]).split())[:200]
            more = f"; {len(rows) - 1} more finding(s)" if len(rows) > 1 else ""
            raise HistoryCorrupt(
                f"history {self.path} is corrupt ({first}{more}): run `scheduler.py repair-history` "
                "to move it aside and start a new one"
            )

    def repair(self, now: datetime) -> Path | None:
        """Move history.db (and its -wal/-shm) aside as `history.db.corrupt-<UTC time>`.

        Returns where it went, or None when there was no file. The next use creates a
        new, empty history.db; the old one stays for forensics (`sqlite3 .recover`).
        """
        self.close()
        if not self.path.exists():
            return None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}")
        for suffix in ("-wal", "-shm"):
            extra = self.path.with_name(self.path.name + suffix)
            if extra.exists():
                extra.rename(aside.with_name(aside.name + suffix))
        self.path.rename(aside)
        self._ready = False
        return aside

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's data goes)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        _use_wal(conn)
        # BEGIN IMMEDIATE takes the write lock before reading the version, so two
        # processes opening a new history.db at once cannot both create the tables.
        conn.isolation_level = None
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"history.db schema version {version} is newer than this dbt-scheduler "
                    f"understands ({SCHEMA_VERSION}): upgrade dbt-scheduler"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {step + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.isolation_level = ""

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, in a transaction committed when the block ends (rolled
        back if it raises), for the modules that own tables of their own in history.db:
        lib/web/tokens.py and lib/web/audit.py."""
        with self._connect() as conn:
            yield conn

    def schema_version(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------ writing

    def start(
        self,
        request: RunRequest,
        started_at: datetime,
        run_dir: Path | None,
        commands: Sequence[str] = (),
    ) -> None:
        """Record a run as `running` the moment it starts, with its run-now overrides
        (`request.target` / `request.select`), the commands it was given, and this
        process (pid + start time) as its supervisor."""
        supervisor = os.getpid()
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, job, trigger, triggered_by, scheduled_for, started_at,"
                " outcome, run_dir, target_override, select_override, commands,"
                " supervisor_pid, supervisor_start)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.run_id,
                    request.job.name,
                    request.trigger.value,
                    request.triggered_by,
                    _iso(request.scheduled_for),
                    _iso(started_at),
                    RUNNING,
                    _str(run_dir),
                    request.target,
                    request.select,
                    json.dumps(list(commands)) if commands else None,
                    supervisor,
                    start_time(supervisor),
                ),
            )

    def set_process(self, run_id: str, pid: int | None = None, container: str | None = None) -> None:
        """Remember the run's own process group (its script's pid, with the pid's start
        time) or container as soon as it exists, so a restarted daemon can find it."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE runs SET process_pid = COALESCE(?, process_pid),"
                " process_start = COALESCE(?, process_start), container = COALESCE(?, container)"
                " WHERE run_id = ?",
                (pid, start_time(pid) if pid is not None else None, container, run_id),
            )

    def set_external_id(self, run_id: str, external_id: str, log_url: str | None = None) -> None:
        """Remember e.g. an ECS task ARN as soon as it exists, before the run ends."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE runs SET external_id = ?, log_url = COALESCE(?, log_url) WHERE run_id = ?",
                (external_id, log_url, run_id),
            )

    def finish(self, record: RunRecord) -> None:
        """Store a finished or skipped run (inserting it if `start` was never called)."""
        outcome = record.outcome
        row = (
            record.job,
            record.trigger.value,
            record.triggered_by,
            _iso(record.scheduled_for),
            _iso(record.started_at),
            _iso(record.finished_at),
            record.duration_s,
            outcome.status.value,
            outcome.exit_code,
            outcome.reason,
            outcome.git_sha,
            json.dumps(count_statuses(outcome.nodes)) if outcome.nodes else None,
            _str(outcome.log_path),
            outcome.log_url,
            outcome.external_id,
            _str(record.run_dir),
            record.target_override,
            record.select_override,
            json.dumps(list(record.commands)) if record.commands else None,
            outcome.image,
            record.run_id,
        )
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO runs (job, trigger, triggered_by, scheduled_for, started_at, finished_at,"
                " duration_s, outcome, exit_code, reason, git_sha, counts, log_path, log_url,"
                " external_id, run_dir, target_override, select_override, commands, image, run_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at,"
                " duration_s = excluded.duration_s, outcome = excluded.outcome,"
                " exit_code = excluded.exit_code, reason = excluded.reason, git_sha = excluded.git_sha,"
                " counts = excluded.counts, log_path = excluded.log_path,"
                " log_url = COALESCE(excluded.log_url, runs.log_url),"
                " external_id = COALESCE(excluded.external_id, runs.external_id),"
                " target_override = COALESCE(excluded.target_override, runs.target_override),"
                " select_override = COALESCE(excluded.select_override, runs.select_override),"
                " commands = COALESCE(excluded.commands, runs.commands),"
                " image = COALESCE(excluded.image, runs.image)",
                row,
            )

    def close_abandoned(
        self,
        finished_at: datetime,
        reason: str,
        keep: Callable[[dict[str, Any]], bool] = lambda row: False,
    ) -> int:
        """Mark runs left `running` by a daemon that died as cancelled; returns how many.

        Runs with an external id (a remote task that may still be going) are left
        for their runner to re-attach to, and so is every row `keep` says is still
        followed (its supervisor or a process holding its job lock is alive) or
        handled elsewhere (an orphan being stopped). Each row is closed at most once:
        only a row still `running` is updated.
        """
        closed = 0
        for row in self.running():
            if row["external_id"] or keep(row):
                continue
            closed += self.close_run(row["run_id"], finished_at, "cancelled", reason)
        return closed

    def close_run(self, run_id: str, finished_at: datetime, outcome: str, reason: str) -> int:
        """End a `running` row that no one can follow any more; 1 if it was still running."""
        with self._connect() as conn:
            return conn.execute(
                "UPDATE runs SET outcome = ?, reason = ?, finished_at = ? WHERE run_id = ? AND outcome = ?",
                (outcome, reason, _iso(finished_at), run_id, RUNNING),
            ).rowcount

    # ------------------------------------------------------------------ reading

    def runs(
        self,
        job: str | None = None,
        limit: int | None = 50,
        outcome: str | None = None,
        trigger: str | None = None,
    ) -> list[dict[str, Any]]:
        """Most recent first, as dicts keyed like report.json (without nodes); `outcome`
        and `trigger` keep only the runs with that outcome or trigger."""
        sql = "SELECT * FROM runs"
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("job", job), ("outcome", outcome), ("trigger", trigger)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._connect() as conn:
            return [_row_to_dict(row) for row in conn.execute(sql, params)]

    def recent(self, jobs: Sequence[str], per_job: int) -> dict[str, list[dict[str, Any]]]:
        """The latest `per_job` runs of each of `jobs`, newest first: one indexed query per
        job on one connection (the web UI's jobs page: last outcome, strip, durations)."""
        sql = "SELECT * FROM runs WHERE job = ? ORDER BY started_at DESC, rowid DESC LIMIT ?"
        with self._connect() as conn:
            return {job: [_row_to_dict(row) for row in conn.execute(sql, (job, per_job))] for job in jobs}

    def strips(self, jobs: Sequence[str], per_job: int) -> dict[str, list[dict[str, Any]]]:
        """Like `recent`, with only run_id, outcome, started_at and duration_s: the jobs page's
        strips and sparklines (2,000 full rows cost ~17 ms to read, these ~4 ms)."""
        sql = (
            "SELECT run_id, outcome, started_at, duration_s FROM runs WHERE job = ?"
            " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        )
        with self._connect() as conn:
            return {job: [dict(row) for row in conn.execute(sql, (job, per_job))] for job in jobs}

    def started_between(
        self, since: datetime, until: datetime, ended_after: datetime | None = None, limit: int = 5000
    ) -> list[dict[str, Any]]:
        """Runs that started in [since, until] (and, with `ended_after`, had not ended before
        it), oldest first, at most `limit`: job, run_id, outcome, started_at, finished_at and
        duration_s only (the timeline draws them; whole rows cost three times as long)."""
        sql = (
            "SELECT job, run_id, outcome, started_at, finished_at, duration_s FROM runs"
            " WHERE started_at >= ? AND started_at <= ?"
        )
        params: list[Any] = [_iso(since), _iso(until)]
        if ended_after is not None:
            sql += " AND (finished_at IS NULL OR finished_at >= ?)"
            params.append(_iso(ended_after))
        sql += " ORDER BY started_at, rowid LIMIT ?"
        params.append(limit)
        with self._connect() as conn:
            return [dict(row) for row in conn.execute(sql, params)]

    def paused(self) -> dict[str, dict[str, Any]]:
        """The paused jobs: job → {paused_by, paused_at}."""
        with self._connect() as conn:
            rows = conn.execute("SELECT job, paused_by, paused_at FROM paused_jobs").fetchall()
        return {row["job"]: {"paused_by": row["paused_by"], "paused_at": row["paused_at"]} for row in rows}

    def set_paused(self, job: str, paused: bool, by: str | None = None, at: datetime | None = None) -> None:
        """Pause `job` (by whom, when) or resume it; pausing a paused job keeps who paused it first."""
        with self._connect() as conn:
            if paused:
                conn.execute(
                    "INSERT OR IGNORE INTO paused_jobs (job, paused_by, paused_at) VALUES (?, ?, ?)",
                    (job, by, _iso(at)),
                )
            else:
                gone = conn.execute("DELETE FROM paused_jobs WHERE job = ?", (job,)).rowcount
                if gone:
                    conn.execute(
                        "INSERT OR REPLACE INTO resumed_jobs (job, resumed_at) VALUES (?, ?)",
                        (job, _iso(at or datetime.now(UTC))),
                    )

    def last_resumed(self, job: str) -> datetime | None:
        """When `job`'s schedule was last resumed (None: never paused, or before schema 8)."""
        with self._connect() as conn:
            row = conn.execute("SELECT resumed_at FROM resumed_jobs WHERE job = ?", (job,)).fetchone()
        return datetime.fromisoformat(row["resumed_at"]) if row is not None else None

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _row_to_dict(row) if row is not None else None

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """The latest run of each job (one query, for `status`)."""
        sql = (
            "SELECT * FROM runs r WHERE rowid = (SELECT rowid FROM runs WHERE job = r.job"
            " ORDER BY started_at DESC, rowid DESC LIMIT 1)"
        )
        with self._connect() as conn:
            return {row["job"]: _row_to_dict(row) for row in conn.execute(sql)}

    def last_scheduled_for(self, job: str) -> datetime | None:
        """The latest fire time that was dispatched (run or skipped), for catch-up after a restart."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT MAX(scheduled_for) FROM runs WHERE job = ? AND trigger IN (?, ?)",
                (job, TriggerKind.SCHEDULE.value, TriggerKind.CATCHUP.value),
            ).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def running(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM runs WHERE outcome = ?", (RUNNING,)).fetchall()
        return [_row_to_dict(row) | {column: row[column] for column in PROCESS_COLUMNS} for row in rows]

    def failure_streak(self, job: str, before: str | None = None) -> list[dict[str, Any]]:
        """The job's latest finished runs that failed in a row, newest first, stopping at
        the first run that did not fail; `skipped` and `cancelled` runs are passed over
        (they neither break a streak nor add to it). `before`: a run id whose own row,
        and any newer, are left out."""
        from lib.models import FAILURE_OUTCOMES

        streak: list[dict[str, Any]] = []
        sql = (
            "SELECT * FROM runs WHERE job = ? AND outcome NOT IN (?, ?, ?)"
            " ORDER BY started_at DESC, rowid DESC"
        )
        with self._connect() as conn:
            rows = conn.execute(sql, (job, RUNNING, "skipped", "cancelled"))
            started = None
            if before is not None:
                mine = conn.execute("SELECT started_at FROM runs WHERE run_id = ?", (before,)).fetchone()
                started = mine[0] if mine else None
            for row in rows:
                if before is not None and (
                    row["run_id"] == before or (started and row["started_at"] > started)
                ):
                    continue
                if row["outcome"] not in FAILURE_OUTCOMES:
                    break
                streak.append(_row_to_dict(row))
        return streak

    def ran_before(self, job: str, moment: datetime) -> bool:
        """Whether any run of `job` started before `moment` (the job existed then)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM runs WHERE job = ? AND started_at < ? LIMIT 1", (job, _iso(moment))
            ).fetchone()
        return row is not None

    def last_success(self, job: str) -> datetime | None:
        """When the job's latest successful run finished (for `deadline:`)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT MAX(finished_at) FROM runs WHERE job = ? AND outcome = ?", (job, "succeeded")
            ).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    # ------------------------------------------------------------------ alerts (lib/notify/dispatcher.py)

    def record_delivery(
        self,
        *,
        run_id: str | None,
        job: str,
        channel: str,
        event: str,
        status: str,
        attempts: int,
        error: str | None,
        at: datetime,
    ) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO deliveries (run_id, job, channel, event, status, attempts, error, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, job, channel, event, status, attempts, error, _iso(at)),
            )

    def deliveries(
        self, run_id: str | None = None, job: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Delivery attempts, newest first, for one run or one job (or all)."""
        sql, params = "SELECT run_id, job, channel, event, status, attempts, error, at FROM deliveries", []
        where = []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if job is not None:
            where.append("job = ?")
            params.append(job)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._connect() as conn:
            return [dict(row) for row in conn.execute(sql, params)]

    def deliveries_of(self, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """run id → its deliveries, oldest first (for `history --json`)."""
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        sql = (
            "SELECT run_id, channel, event, status, attempts, error, at FROM deliveries"
            f" WHERE run_id IN ({marks}) ORDER BY id"
        )
        found: dict[str, list[dict[str, Any]]] = {}
        with self._connect() as conn:
            for row in conn.execute(sql, list(run_ids)):
                item = dict(row)
                found.setdefault(item.pop("run_id"), []).append(item)
        return found

    def failed_deliveries(self, since: datetime, limit: int = 5) -> list[dict[str, Any]]:
        """The latest deliveries that failed for good since `since`, newest first (for `status`)."""
        sql = (
            "SELECT run_id, job, channel, event, attempts, error, at FROM deliveries"
            " WHERE status = 'failed' AND at >= ? ORDER BY id DESC LIMIT ?"
        )
        with self._connect() as conn:
            return [dict(row) for row in conn.execute(sql, (_iso(since), limit))]

    def alert_state(self, rule: str, job: str) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT last_key, last_sent_at, suppressed FROM alert_state WHERE rule = ? AND job = ?",
                (rule, job),
            ).fetchone()
        return dict(row) if row is not None else None

    def set_alert_state(
        self, rule: str, job: str, last_key: str | None, last_sent_at: datetime | None, suppressed: int
    ) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO alert_state (rule, job, last_key, last_sent_at, suppressed)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (rule, job) DO UPDATE SET last_key = excluded.last_key,"
                " last_sent_at = excluded.last_sent_at, suppressed = excluded.suppressed",
                (rule, job, last_key, _iso(last_sent_at), suppressed),
            )

    # ------------------------------------------------------------------ retention (lib/retention.py)

    def jobs(self) -> list[str]:
        """Every job with at least one row, jobs no longer in jobs.yaml included."""
        with self._connect() as conn:
            return [row[0] for row in conn.execute("SELECT DISTINCT job FROM runs ORDER BY job")]

    def outcomes(self, job: str) -> dict[str, str]:
        """run_id → outcome (`running` included) of every row of `job`."""
        with self._connect() as conn:
            return dict(conn.execute("SELECT run_id, outcome FROM runs WHERE job = ?", (job,)).fetchall())

    def rows_to_keep(self, job: str) -> set[str]:
        """The run ids of `job` that pruning never deletes, whatever their age.

        Its newest row, which `status` shows as the last run, and the row with its
        latest scheduled fire time, which `last_scheduled_for` (catch-up after a
        restart) reads: deleting that one would make an old missed fire time look new.
        Running rows are kept too, but by `prune` itself.
        """
        with self._connect() as conn:
            newest = conn.execute(
                "SELECT run_id FROM runs WHERE job = ? ORDER BY started_at DESC, rowid DESC LIMIT 1", (job,)
            ).fetchone()
            scheduled = conn.execute(
                "SELECT run_id FROM runs WHERE job = ? AND trigger IN (?, ?) AND scheduled_for IS NOT NULL"
                " ORDER BY scheduled_for DESC, rowid DESC LIMIT 1",
                (job, TriggerKind.SCHEDULE.value, TriggerKind.CATCHUP.value),
            ).fetchone()
        return {row[0] for row in (newest, scheduled) if row is not None}

    def prune(self, job: str, started_before: datetime, dry_run: bool = False) -> int:
        """Delete `job`'s finished rows that started before `started_before`; returns how many.

        Never a running row, never one of `rows_to_keep(job)`. With `dry_run`, only counts.
        """
        keep = sorted(self.rows_to_keep(job))
        where = "job = ? AND started_at < ? AND outcome != ?"
        if keep:
            where += f" AND run_id NOT IN ({', '.join('?' for _ in keep)})"
        params = (job, _iso(started_before), RUNNING, *keep)
        with self._connect() as conn:
            if dry_run:
                return int(conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", params).fetchone()[0])
            # A run's deliveries go with it; those of no run (late, heartbeat) by their age.
            conn.execute(
                f"DELETE FROM deliveries WHERE run_id IN (SELECT run_id FROM runs WHERE {where})", params
            )
            conn.execute("DELETE FROM deliveries WHERE run_id IS NULL AND job = ? AND at < ?", params[:2])
            return conn.execute(f"DELETE FROM runs WHERE {where}", params).rowcount


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class HistoryCorrupt(SchedulerError):
    """history.db fails its integrity check; the message names the repair command."""


def _row_to_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = {column: row[column] for column in COLUMNS}
    data["counts"] = json.loads(row["counts"]) if row["counts"] else None
    data["commands"] = json.loads(row["commands"]) if row["commands"] else None
    data["run_dir"] = row["run_dir"]
    return data


def _use_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Put the database in WAL mode (it stays so: a file already in WAL is left alone).

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once
    instead of using the busy timeout when several connections open a new history.db
    together (seen with four threads): retry for up to ~5 s.
    """
    for attempt in range(attempts):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)
