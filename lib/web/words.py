"""A job's schedule in words for the web UI: `At 02:30, Monday through Friday`.

Cron expressions are described by cron-descriptor (a well-kept library, 24-hour clock);
an `every:` trigger already says itself in words (`every 30 minutes`). A description is
cached per expression: describing costs ~0.2 ms, and the jobs page shows every job.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from lib.triggers import _MACROS, CronTrigger


@lru_cache(maxsize=4096)
def cron_in_words(expression: str) -> str:
    """`expression` (five fields or a macro) in English words; the expression itself when
    the library cannot describe it (it never stops a page from rendering)."""
    from cron_descriptor import Options, get_description

    options = Options()
    options.use_24hour_time_format = True
    text = _MACROS.get(expression.lower(), expression)
    try:
        return str(get_description(text, options))
    except Exception:  # the library's errors have no common base; the expression is shown
        return expression


def schedule_in_words(trigger: Any) -> str:
    """What a trigger means, in words."""
    if isinstance(trigger, CronTrigger):
        return cron_in_words(trigger.expression)
    return str(trigger.describe())
