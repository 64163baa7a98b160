"""A cycle's pace, as a planning office asks for it when it opens a cycle for a demo or a training.

A paced cycle runs on a compressed calendar: its calendar moves faster than the wall clock, so a year of
approvals, monthly closes and quarterly reviews passes in minutes. Every event still carries the calendar's
time (``at``) beside the real time it was stored (``recorded_at``). It is not for real planning: the
calendar runs away from the real one and cannot be slowed down afterwards.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.base import UtcDateTime
from domain.calendar import MAX_SPEED, Pace

#: An average calendar month (a year of 365.25 days in twelve).
MONTH = timedelta(days=365.25 / 12)


class CyclePace(BaseModel):
    """A compressed calendar, for demos and training only: give ``month_seconds`` (wall-clock seconds per
    calendar month, e.g. 6: a year in a little over a minute) or ``speed`` (calendar seconds per wall-clock
    second). ``calendar_starts_at`` is where the calendar stands when the cycle opens (default: now)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    month_seconds: float | None = Field(
        default=None, gt=0, description="Wall-clock seconds per calendar month."
    )
    speed: float | None = Field(default=None, description="Calendar seconds per wall-clock second.")
    calendar_starts_at: UtcDateTime | None = Field(
        default=None, description="Where the calendar stands when the cycle opens (default: now)."
    )

    @model_validator(mode="after")
    def _one_rate(self) -> CyclePace:
        if (self.month_seconds is None) == (self.speed is None):
            raise ValueError("give either month_seconds or speed for the pace, not both and not neither")
        fastest = MONTH.total_seconds() / MAX_SPEED
        if not 1 <= self.factor() <= MAX_SPEED:
            raise ValueError(
                f"a pace runs from real time (speed 1, a month every {MONTH.total_seconds():.0f} s) to speed "
                f"{MAX_SPEED:.0f} (a month every {fastest:.2f} s); choose a rate in that range"
            )
        return self

    def factor(self) -> float:
        """Calendar seconds per wall-clock second."""
        if self.speed is not None:
            return self.speed
        assert self.month_seconds is not None
        return MONTH.total_seconds() / self.month_seconds

    def starting(self, now: datetime) -> Pace:
        """The pace of a cycle opened at the real moment ``now``."""
        return Pace(speed=self.factor(), calendar_origin=self.calendar_starts_at or now, real_origin=now)
