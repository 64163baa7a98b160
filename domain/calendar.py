"""The planning cycle's calendar: execution period, monthly close, quarters and gate deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from math import ceil

from pydantic import Field

from domain.base import DomainModel, Month, OrgLevel, UtcDateTime, month_add, month_start


class GateDeadline(DomainModel):
    """When the gate held at one level of the hierarchy must have decided (e.g. regional leadership by 15
    Nov)."""

    level: OrgLevel
    at: UtcDateTime


class CycleCalendar(DomainModel):
    cycle_id: str = Field(min_length=1)
    execution_start: Month
    execution_months: int = Field(ge=1, le=36)
    # Actuals of a month are due on this day of the following month (the monthly close).
    monthly_close_day: int = Field(ge=1, le=28)
    gate_deadlines: tuple[GateDeadline, ...] = ()
    strategy_window_opens: UtcDateTime | None = None
    approval_deadline: UtcDateTime | None = None

    def months(self) -> tuple[str, ...]:
        return tuple(month_add(self.execution_start, i) for i in range(self.execution_months))

    def contains(self, month: str) -> bool:
        return month in self.months()

    def quarter_count(self) -> int:
        return -(-self.execution_months // 3)

    def quarter_months(self, quarter: int) -> tuple[str, ...]:
        """Quarters count from the start of the execution period, not the calendar year."""
        return self.months()[(quarter - 1) * 3 : quarter * 3]

    def quarter_ends(self) -> tuple[str, ...]:
        return tuple(self.quarter_months(q)[-1] for q in range(1, self.quarter_count() + 1))

    def close_at(self, month: str) -> datetime:
        """When the actuals of `month` are due."""
        following = month_start(month_add(month, 1))
        return following.replace(day=self.monthly_close_day)

    def quarter_review_due(self, quarter: int) -> datetime:
        # A review needs the quarter's last actuals, so it is due at that month's close.
        return self.close_at(self.quarter_months(quarter)[-1])

    def quarter_ended(self, quarter: int, at: datetime) -> bool:
        return at >= month_start(month_add(self.quarter_months(quarter)[-1], 1))

    def period_end(self) -> datetime:
        return month_start(month_add(self.execution_start, self.execution_months))

    def gate_deadline(self, level: OrgLevel) -> datetime | None:
        for deadline in self.gate_deadlines:
            if deadline.level == level:
                return deadline.at
        return self.approval_deadline

    def shifted(self) -> CycleCalendar:
        """The calendar of the next iteration: the same shape, one execution period later."""
        start = month_add(self.execution_start, self.execution_months)
        delta = month_start(start) - month_start(self.execution_start)

        def later(moment: datetime | None) -> datetime | None:
            return None if moment is None else (moment + delta).astimezone(UTC)

        return self.model_copy(
            update={
                "execution_start": start,
                "gate_deadlines": tuple(
                    GateDeadline(level=d.level, at=d.at + delta) for d in self.gate_deadlines
                ),
                "strategy_window_opens": later(self.strategy_window_opens),
                "approval_deadline": later(self.approval_deadline),
            }
        )


# Calendar time per wall-clock second at most: a month in about a quarter of a second.
MAX_SPEED = 10_000_000.0


class Pace(DomainModel):
    """A compressed calendar, for demos and training: the cycle's calendar runs ``speed`` times faster than
    the wall clock. At the real moment ``real_origin`` the calendar reads ``calendar_origin``; from then on a
    workflow's calendar time is ``calendar_origin + (now - real_origin) * speed``, so a year of monthly
    closes and quarterly reviews passes in minutes. Without a pace, calendar time is real time.

    A paced cycle records its pace in its CycleOpened event: an auditor sees that its ``at`` times are
    calendar times, not real ones.
    """

    speed: float = Field(ge=1, le=MAX_SPEED)
    calendar_origin: UtcDateTime
    real_origin: UtcDateTime

    def calendar_at(self, real: datetime) -> datetime:
        """The calendar's time at the real moment ``real``. It stops at the end of year 9999, which a fast
        pace reaches within days or weeks of real time: a plan left running then still answers."""
        try:
            return self.calendar_origin + (real - self.real_origin) * self.speed
        except OverflowError:
            return datetime.max.replace(tzinfo=UTC)

    def real_at(self, calendar: datetime) -> datetime:
        """The real moment at which the calendar reads ``calendar``."""
        return self.real_origin + (calendar - self.calendar_origin) / self.speed

    def real_duration(self, calendar: timedelta) -> timedelta:
        """How long ``calendar`` time takes on the wall clock, rounded up to the millisecond, so a timer of
        that length never wakes before the calendar moment it waits for."""
        return timedelta(milliseconds=ceil(calendar / timedelta(milliseconds=1) / self.speed))
