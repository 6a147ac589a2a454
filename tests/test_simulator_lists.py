"""The simulator's lists as its clock runs: each second's list is the last one with the
records that took a step since moved into place, and it must equal the list built afresh
(what every collector test's truth rests on)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from partnerboard.simulator.business_api import Lists
from partnerboard.simulator.world import World, visible


@dataclass
class Clock:
    at: datetime

    def clock(self) -> datetime:
        return self.at


@pytest.mark.parametrize("name", ["orders", "payments", "refunds", "returns", "tickets"])
def test_lists_kept_up_second_by_second_equal_lists_built_afresh(name: str) -> None:
    start = datetime(2026, 10, 20, 8, tzinfo=UTC)
    world = World(7, date(2026, 7, 1), 120, scale=0.05)
    state = Clock(start)
    lists = Lists(world, state)
    rng = random.Random(3)
    steps = [1, 1, 2, 7, 60, 600, 3600, 86400 * 3, 1, 5]  # the last-but-two builds afresh
    for i in range(60):
        state.at += timedelta(seconds=steps[i % len(steps)] * rng.uniform(0.5, 1.5))
        now = int(state.at.timestamp())
        fresh = visible(getattr(world, name), now)
        assert lists.rows(name) == fresh, (name, i)
        ordered, created, position = lists.by_created(name)
        expected = sorted(fresh, key=lambda r: (r[2].created, r[2].id))
        assert ordered == expected and created == [r[2].created for r in expected], (name, i)
        assert all(ordered[position[r[2].id]] is r or ordered[position[r[2].id]] == r for r in expected)
