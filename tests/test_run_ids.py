"""Run ids: sortable by time, and distinct even when many are made in the same second."""

from __future__ import annotations

import re

from lib.execution import new_run_id
from tests.conftest import START


def test_many_run_ids_in_one_second_are_distinct_and_keep_the_format() -> None:
    ids = [new_run_id(START) for _ in range(50_000)]  # a resumed host's day of fire times, and more
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"20260302T000000Z-[0-9a-f]{6}", run_id) for run_id in ids[:100])
