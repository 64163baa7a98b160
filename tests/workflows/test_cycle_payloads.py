"""Every Temporal payload of a cycle that grows with its number of units, for a 10,000-unit hierarchy,
encoded as the worker encodes it (the pydantic data converter), stays well below Temporal's 2 MB limit.

Regression: CycleOpened v1 listed every unit's approval chain (about 820 bytes a unit) and the cycle's
continue-as-new input carried every plan's figures (about 600 bytes a unit), so a cycle of about 2,000
units hit the limit. What remains that grows with the units is the hierarchy itself, carried once per
payload in its packed form (domain.cycle.pack_hierarchy): about 100 bytes a unit for this org chart's
names and e-mail addresses, so 10,000 units take about 1 MB and the ceiling is near 20,000 units. The
bounds: 1.25 MiB (under two thirds of the limit) for what grows with the units, 16 KiB for what does not.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from domain import GateMode, OrgHierarchy, OrgLevel, OrgUnit, Phase
from domain.codec import encode_event
from domain.cycle import (
    CloseCycle,
    CycleState,
    OpenCycle,
    decide_cycle,
    open_plan_command,
    progress_code,
    replay_cycle,
)
from domain.envelope import AppendRequest, EventMetadata, EventToAppend
from domain.rollup import PlanFigures, TargetTotal, consolidate_figures, plan_figures
from tests.domain import factory as f
from workflows.contracts import CycleProgress, CycleStart, PlanStart

TEMPORAL_LIMIT = 2 * 1024 * 1024
SCALED_BOUND = 1280 * 1024  # what grows with the number of units
PER_PLAN_BOUND = 16 * 1024  # what one plan sends or receives, whatever the cycle's size
UNITS = 10_000  # planning units below global, each with a plan


def company(units: int) -> OrgHierarchy:
    """A company of ``units`` planning units below global: 50 regions (a quorum of their leadership decides
    at each), countries below them, a global board; names and people as long as a real org chart's."""
    regions = 50
    org = [
        OrgUnit(
            unit_id="GLOBAL",
            name="Global Leadership",
            level=OrgLevel.GLOBAL,
            approvers=("ceo@example.com", "cfo@example.com"),
            approval_mode=GateMode.ALL,
            fallback_approver="board.chair@example.com",
        )
    ]
    for r in range(regions):
        region = f"REGION-{r:02d}"
        org.append(
            OrgUnit(
                unit_id=region,
                name=f"Sales Region {r:02d}",
                level=OrgLevel.REGION,
                parent_id="GLOBAL",
                head=f"region{r:02d}.president@example.com",
                approvers=tuple(f"region{r:02d}.{role}@example.com" for role in ("cfo", "coo", "cso")),
                approval_mode=GateMode.QUORUM,
                quorum=2,
                fallback_approver=f"region{r:02d}.deputy@example.com",
            )
        )
    for c in range(units - regions):
        org.append(
            OrgUnit(
                unit_id=f"CTRY-{c:05d}",
                name=f"Country Organisation {c:05d}",
                level=OrgLevel.COUNTRY,
                parent_id=f"REGION-{c % regions:02d}",
                head=f"country{c:05d}.manager@example.com",
            )
        )
    return OrgHierarchy(units=tuple(org))


def size(value: Any) -> int:
    """Bytes of ``value`` as the worker's data converter puts it into a Temporal payload."""
    [payload] = pydantic_data_converter.payload_converter.to_payloads([value])
    return len(payload.data)


@pytest.fixture(scope="module")
def opening() -> OpenCycle:
    calendar = f.calendar().model_copy(update={"cycle_id": "FY2030"})
    return OpenCycle(actor="system:crm", at=f.T0, calendar=calendar, hierarchy=company(UNITS))


@pytest.fixture(scope="module")
def opened_state(opening: OpenCycle) -> CycleState:
    return replay_cycle(decide_cycle(CycleState(), opening))


def test_the_cycles_start_and_continue_as_new_inputs_stay_well_below_the_limit(
    opening: OpenCycle, opened_state: CycleState
) -> None:
    assert len(opened_state.plans) == UNITS
    first = size(CycleStart(open=opening))
    # The largest carried input: every plan started and heard of with the largest code, the cycle closed
    # and being closed, the whole window of remembered close requests.
    widest = progress_code(
        PlanFigures(
            unit_id="x", phase=list(Phase)[-1], signed_off_revision=1, escalated=True, overdue_months=1
        )
    )
    carried = CycleStart(
        open=opening,
        close=CloseCycle(actor="planning-office", at=f.T0, reason="the fiscal year is over"),
        stream_version=2,
        started=UNITS,
        close_sent=UNITS // 2,
        progress=[widest] * UNITS,
        processed=[str(uuid.uuid4()) for _ in range(100)],
    )
    carried_size = size(carried)
    print(f"\n10,000 units: start input {first:,} B, continue-as-new input {carried_size:,} B")
    assert first < carried_size < SCALED_BOUND
    # What the cycle carries per plan beyond the hierarchy: a few bytes, not v1's 600.
    assert (carried_size - first) / UNITS < 8
    # And what it reads back is what it sent.
    assert (
        CycleStart.model_validate_json(
            pydantic_data_converter.payload_converter.to_payloads([carried])[0].data
        )
        == carried
    )


def test_the_opening_event_through_the_append_activity_stays_well_below_the_limit(
    opening: OpenCycle,
) -> None:
    [opened] = decide_cycle(CycleState(), opening)
    request = AppendRequest(
        stream_id="cycle:FY2030",
        expected_version=0,
        events=[
            EventToAppend(
                event_id=uuid.uuid4(),
                type=opened.type,
                schema_version=opened.schema_version,
                data=encode_event(opened),
                metadata=EventMetadata(actor="system:crm", source="cycle", request_id="cycle:FY2030:open"),
            )
        ],
    )
    activity_input = size(request)
    print(f"\n10,000 units: CycleOpened append activity input {activity_input:,} B")
    assert activity_input < SCALED_BOUND
    # v1 listed each unit's chain as well: what it would have weighed, for the record.
    v1_plans = sum(
        len(
            pydantic_data_converter.payload_converter.to_payloads(
                [open_plan_command(replay_cycle([opened]), u.unit_id, "a", f.T0).approval_chain]
            )[0].data
        )
        for u in opening.hierarchy.units_below_global()[:100]
    )
    assert v1_plans * (UNITS / 100) > TEMPORAL_LIMIT  # the regression: v1 could not carry 10,000 units


def test_what_one_plan_sends_or_receives_does_not_grow_with_the_cycle(
    opening: OpenCycle, opened_state: CycleState
) -> None:
    deepest = opened_state.plans[-1].unit_id
    command = open_plan_command(opened_state, deepest, opening.actor, opening.at)
    child_input = size(
        PlanStart(plan_id=f"plan:FY2030:{deepest}", open=command, cycle_workflow_id="cycle:FY2030")
    )
    figures = plan_figures(f.executing().state)  # a plan with content, actuals and reports: its signal
    signal = size(figures)
    progress = size(
        CycleProgress(
            cycle_id="FY2030",
            plans=UNITS,
            started=UNITS,
            phases={p.value: UNITS for p in Phase},
            signed_off=UNITS,
            escalated=UNITS,
            overdue=UNITS,
            closed=True,
            close_sent=UNITS,
            stream_version=2,
        )
    )
    print(f"\nper plan: child input {child_input:,} B, figures signal {signal:,} B, progress {progress:,} B")
    assert max(child_input, signal, progress) < PER_PLAN_BOUND


def test_the_rollup_answer_is_per_currency_and_metric_not_per_unit(opened_state: CycleState) -> None:
    assert opened_state.hierarchy is not None
    many = {
        p.unit_id: PlanFigures(
            unit_id=p.unit_id,
            phase=Phase.EXECUTING,
            currency="EUR",
            forecast=f.content().forecast_total(),
            targets=(TargetTotal(metric="revenue", unit="EUR", total=f.content().forecast_total()),),
        )
        for p in opened_state.plans
    }
    company_wide = consolidate_figures("GLOBAL", opened_state.hierarchy, many)
    # `plans` names the units with figures: the one part that grows (about 14 bytes a unit).
    answer = len(company_wide.model_dump_json())
    print(f"\n10,000 units: roll-up answer {answer:,} B")
    assert len(company_wide.plans) == UNITS and answer < SCALED_BOUND
