"""A workflow's calendar time: what every command is stamped with and what its deadlines are measured on.

Without a pace, calendar time is ``workflow.now()``, exactly as before paces existed, so running plans and
their recorded histories issue the same commands. With a pace (a cycle opened for a demo or a training,
see ``contracts.Pace``) the calendar runs faster than the wall clock: it is computed from ``workflow.now()``
alone, so it stays deterministic on replay, and a durable timer sleeps the real time the calendar needs to
reach a deadline.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.contracts import Pace


def calendar_now(pace: Pace | None) -> datetime:
    """The workflow's calendar time now."""
    now = workflow.now()
    return now if pace is None else pace.calendar_at(now)


def timer_until(pace: Pace | None, moment: datetime) -> timedelta:
    """How long a durable timer must sleep (real time) for the calendar to reach ``moment``."""
    if pace is None:
        return moment - workflow.now()
    return pace.real_duration(moment - calendar_now(pace))
