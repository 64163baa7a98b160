"""The tracking read model: per plan, measure and month, the target, the actual and its status.

It needs no plan state: every tracking event already carries what a dashboard shows (the domain
records an actual's target and status with it, and a monthly report carries every measure's line),
so rows are upserted straight from the events, the latest event winning.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg

from domain import events as ev
from domain.tracking import MeasureStatus
from eventstore import RecordedEvent
from planloop.readmodels.projector import Projection

# A CSF's definition seeds its months with their targets and no data yet.
SEED_TARGET: Final = """
INSERT INTO plan_tracking (stream_id, measure, month, target, actual, status, source, updated_at)
VALUES ($1, $2, $3, $4, NULL, $5, NULL, $6)
ON CONFLICT (stream_id, measure, month) DO UPDATE SET
    target = EXCLUDED.target, updated_at = EXCLUDED.updated_at
"""
# An actual (or its correction) sets the value and status; a missing target keeps the seeded one.
RECORD_ACTUAL: Final = """
INSERT INTO plan_tracking (stream_id, measure, month, target, actual, status, source, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (stream_id, measure, month) DO UPDATE SET
    target = COALESCE(EXCLUDED.target, plan_tracking.target), actual = EXCLUDED.actual,
    status = EXCLUDED.status, source = EXCLUDED.source, updated_at = EXCLUDED.updated_at
"""
# A monthly report's line is the domain's verdict on the month as it closed.
REPORT_LINE: Final = """
INSERT INTO plan_tracking (stream_id, measure, month, target, actual, status, source, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)
ON CONFLICT (stream_id, measure, month) DO UPDATE SET
    target = EXCLUDED.target, actual = EXCLUDED.actual, status = EXCLUDED.status,
    updated_at = EXCLUDED.updated_at
"""
# A removed CSF's months go, unless actuals were already reported against them.
REMOVE_MEASURE: Final = """
DELETE FROM plan_tracking WHERE stream_id = $1 AND measure = $2 AND actual IS NULL
"""


class TrackingProjection(Projection):
    name = "tracking"
    event_types = frozenset(
        {"CsfDefined", "CsfRemoved", "ActualRecorded", "ActualCorrected", "MonthlyReportIssued"}
    )
    stream_prefix = "plan:"
    reset_statements = ("DELETE FROM plan_tracking",)

    async def apply(self, conn: asyncpg.Connection, recorded: RecordedEvent, decoded: Any) -> None:
        stream = recorded.stream_id
        match decoded:
            case ev.CsfDefined(csf=csf):
                await conn.executemany(
                    SEED_TARGET,
                    [
                        (stream, csf.csf_id, t.month, t.target, MeasureStatus.NO_DATA.value, decoded.at)
                        for t in csf.monthly_targets
                    ],
                )
            case ev.CsfRemoved(csf_id=csf_id):
                await conn.execute(REMOVE_MEASURE, stream, csf_id)
            case ev.ActualRecorded() | ev.ActualCorrected():
                await conn.execute(
                    RECORD_ACTUAL,
                    stream,
                    decoded.measure,
                    decoded.month,
                    decoded.target,
                    decoded.value,
                    decoded.status.value,
                    decoded.source,
                    decoded.at,
                )
            case ev.MonthlyReportIssued(report=report):
                await conn.executemany(
                    REPORT_LINE,
                    [
                        (stream, ln.measure, report.month, ln.target, ln.actual, ln.status.value, decoded.at)
                        for ln in report.measures
                    ],
                )
