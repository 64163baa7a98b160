"""Plan streams written to the store as a workflow writes them: domain events from the Harness."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from domain import commands as cmd
from domain import encode_event
from eventstore import EventStore, NewEvent
from tests.domain.factory import Harness

STREAM = "plan:FY2027:DE-AUTOMATION"


@dataclass
class PlanWriter:
    """Appends the Harness's new events to the plan's stream, each command's events as one append."""

    store: EventStore
    harness: Harness = field(default_factory=Harness)
    stream: str = STREAM
    written: int = 0

    async def flush(self) -> None:
        new = self.harness.events[self.written :]
        if not new:
            return
        events = [
            NewEvent(uuid.uuid4(), e.type, encode_event(e), {"actor": e.actor}, e.schema_version) for e in new
        ]
        await self.store.append(self.stream, self.written, events)
        self.written += len(new)

    async def do(self, command_type: type[cmd.CommandBase], actor: str, **fields: object) -> None:
        self.harness.do(command_type, actor, **fields)
        await self.flush()

    async def tick(self, at: datetime) -> None:
        self.harness.at(at).run(cmd.Tick(at=at))
        await self.flush()

    async def actual(self, measure: str, month: str, value: int | str) -> None:
        extra = {"currency": "EUR"} if measure == "revenue" else {}
        await self.do(
            cmd.RecordActual,
            "erp",
            measure=measure,
            month=month,
            value=Decimal(value),
            source="erp:sap",
            **extra,
        )


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]
