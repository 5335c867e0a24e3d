"""Small SVG charts drawn on the server: a duration sparkline and a Gantt timeline.

Pure functions over history rows (dicts keyed like report.json) returning SVG markup, so
the pages need no JavaScript to show them; every bar and point carries a <title> (what a
mouse-over and a screen reader say), and every chart has a text alternative beside it on
the page. Outcome colours come from the stylesheet (class `o-<outcome>`), one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any

from markupsafe import Markup


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def duration_text(seconds: float | None) -> str:
    """`4.2 s`, `3 min 5 s`, `1 h 2 min`; an em dash for no duration."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def sparkline(runs: Sequence[dict[str, Any]], width: int = 120, height: int = 28) -> Markup:
    """The durations of `runs` (newest first, as history gives them) as a line drawn
    oldest to newest, a dot per run coloured by outcome; empty markup for fewer than 2."""
    points = [r for r in reversed(runs) if r.get("duration_s") is not None and r.get("outcome") != "skipped"]
    if len(points) < 2:
        return Markup("")
    longest = max(float(r["duration_s"]) for r in points) or 1.0
    step = (width - 6) / (len(points) - 1)
    xy = [
        (3 + i * step, height - 3 - (height - 6) * float(r["duration_s"]) / longest)
        for i, r in enumerate(points)
    ]
    line = " ".join(f"{x:.0f},{y:.0f}" for x, y in xy)
    # One dot, the latest run's, coloured by its outcome: a dot (and a <title>) per run made
    # the jobs page of 100 jobs 300 kB heavier; the strip beside it links every run.
    (last_x, last_y), last = xy[-1], points[-1]
    label = (
        f"durations of the last {len(points)} runs, longest {duration_text(longest)}, "
        f"latest {duration_text(last['duration_s'])}"
    )
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<polyline points="{line}" fill="none"/>'
        f'<circle class="o-{escape(str(last["outcome"]))}" cx="{last_x:.0f}" cy="{last_y:.0f}" r="2.5"/>'
        "</svg>"
    )


@dataclass(frozen=True)
class Bar:
    job: str
    run_id: str
    outcome: str
    start: datetime
    end: datetime
    lane: int  # 0, 1, …: runs of one job that overlap get a lane each


def lanes(rows: Sequence[dict[str, Any]], now: datetime) -> list[Bar]:
    """Bars for the runs in `rows` (oldest first); a running run ends `now`. Within a job,
    a run that starts before an earlier one ended goes one lane down: overlaps show."""
    bars: list[Bar] = []
    ends: dict[str, list[datetime]] = {}  # per job, where each lane is free from
    for row in rows:
        start = _when(row.get("started_at"))
        if start is None:
            continue
        end = _when(row.get("finished_at")) or now
        free = ends.setdefault(row["job"], [])
        lane = next((i for i, until in enumerate(free) if until <= start), len(free))
        if lane == len(free):
            free.append(end)
        else:
            free[lane] = end
        bars.append(Bar(row["job"], row["run_id"], str(row.get("outcome")), start, max(end, start), lane))
    return bars


def gantt(
    rows: Sequence[dict[str, Any]],
    jobs: Sequence[str],
    since: datetime,
    until: datetime,
    link: str = "/runs/",
    width: int = 960,
    row_height: int = 14,
) -> Markup:
    """Which jobs ran when in [since, until): a row per job (a lane more per overlap), a
    bar per run from start to end, coloured by outcome, each linked to its run page."""
    bars = [bar for bar in lanes(rows, until) if bar.job in jobs]
    label_w, span = 150, (until - since).total_seconds() or 1.0
    plot_w = width - label_w - 10
    depth = {job: 1 for job in jobs}
    for bar in bars:
        depth[bar.job] = max(depth[bar.job], bar.lane + 1)
    top: dict[str, int] = {}
    y = 22
    for job in jobs:
        top[job] = y
        y += depth[job] * row_height + 6
    height = y + 4

    def x(moment: datetime) -> float:
        seconds = min(max((moment - since).total_seconds(), 0.0), span)
        return label_w + plot_w * seconds / span

    parts = [
        f'<svg class="gantt" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="runs from {escape(since.isoformat())} to {escape(until.isoformat())}">'
    ]
    ticks = 6 if span <= 86400 else 7
    for i in range(ticks + 1):
        moment = since + timedelta(seconds=span * i / ticks)
        tx = x(moment)
        text = moment.strftime("%H:%M") if span <= 86400 else moment.strftime("%a %d")
        parts.append(f'<line class="tick" x1="{tx:.1f}" y1="16" x2="{tx:.1f}" y2="{height}"/>')
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"  # the ends stay inside
        parts.append(
            f'<text class="tick" x="{tx:.1f}" y="12" text-anchor="{anchor}">{escape(text)} UTC</text>'
        )
    for job in jobs:
        baseline = top[job] + row_height - 3
        parts.append(
            f'<text class="job" x="4" y="{baseline}">{escape(job[:22])}<title>{escape(job)}</title></text>'
        )
    for bar in bars:
        bx, bw = x(bar.start), max(2.0, x(bar.end) - x(bar.start))
        by = top[bar.job] + bar.lane * row_height
        title = (
            f"{bar.job} {bar.run_id}: {bar.outcome}, {bar.start:%Y-%m-%d %H:%M:%S} UTC, "
            f"{duration_text((bar.end - bar.start).total_seconds())}"
        )
        parts.append(
            f'<a href="{escape(link + bar.run_id)}"><rect class="o-{escape(bar.outcome)}" x="{bx:.1f}" '
            f'y="{by}" width="{bw:.1f}" height="{row_height - 2}" rx="2">'
            f"<title>{escape(title)}</title></rect></a>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
