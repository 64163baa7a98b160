"""Execution planning: at most three CSFs per team with owners and targets; both leads confirm alignment."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain import MonthTarget, Phase, Team
from domain import commands as cmd
from tests.domain.factory import (
    AUTHOR,
    MARKETING_LEAD,
    SALES_LEAD,
    csf,
    drafted,
    executing,
    in_execution_planning,
    signed_off,
)


def test_execution_planning_starts_after_sign_off_by_an_author() -> None:
    drafted().refused(cmd.StartExecutionPlanning, AUTHOR, "wrong_phase", sales_lead="s", marketing_lead="m")
    h = signed_off()
    h.refused(cmd.StartExecutionPlanning, "intern", "not_plan_author", sales_lead="s", marketing_lead="m")
    h.refused(cmd.StartExecutionPlanning, AUTHOR, "invalid_command", sales_lead=" ", marketing_lead="m")
    h.do(cmd.StartExecutionPlanning, AUTHOR, sales_lead=SALES_LEAD, marketing_lead=MARKETING_LEAD)
    assert h.state.phase is Phase.EXECUTION_PLANNING


def test_at_most_three_csfs_per_team() -> None:
    h = in_execution_planning()
    for i in range(1, 4):
        h.do(cmd.DefineCsf, SALES_LEAD, csf=csf(f"S{i}", Team.SALES, "anna"))
    error = h.refused(cmd.DefineCsf, SALES_LEAD, "too_many_csfs", csf=csf("S4", Team.SALES, "anna"))
    assert "S1, S2, S3" in error.message
    h.do(cmd.DefineCsf, MARKETING_LEAD, csf=csf("M1", Team.MARKETING, "mark"))
    h.do(cmd.RemoveCsf, SALES_LEAD, csf_id="S3")
    h.do(cmd.DefineCsf, SALES_LEAD, csf=csf("S4", Team.SALES, "anna"))
    assert [c.csf_id for c in h.state.csfs_of(Team.SALES)] == ["S1", "S2", "S4"]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (csf("S1", Team.SALES, " "), "invalid_csf"),
        (
            csf("S1", Team.SALES, "anna").model_copy(
                update={"monthly_targets": (MonthTarget(month="2027-01", target=Decimal(1)),)}
            ),
            "invalid_csf",
        ),
        (csf("S1", Team.SALES, "anna", coach="anna"), "invalid_csf"),
    ],
)
def test_a_csf_needs_an_owner_a_target_each_month_and_a_separate_coach(bad: object, code: str) -> None:
    h = in_execution_planning()
    h.refused(cmd.DefineCsf, SALES_LEAD, code, csf=bad)


def test_csfs_are_defined_by_their_team_lead_once_each_and_only_while_planning() -> None:
    h = in_execution_planning()
    h.refused(cmd.DefineCsf, MARKETING_LEAD, "not_team_lead", csf=csf("S1", Team.SALES, "anna"))
    h.do(cmd.DefineCsf, AUTHOR, csf=csf("S1", Team.SALES, "anna"))
    h.refused(cmd.DefineCsf, SALES_LEAD, "duplicate_csf", csf=csf("S1", Team.SALES, "anna"))
    h.refused(cmd.RemoveCsf, SALES_LEAD, "unknown_csf", csf_id="S9")
    executing().refused(cmd.DefineCsf, SALES_LEAD, "wrong_phase", csf=csf("S2", Team.SALES, "anna"))


def test_both_leads_confirm_the_joint_plan_before_execution_starts() -> None:
    h = in_execution_planning()
    h.do(cmd.DefineCsf, SALES_LEAD, csf=csf("S1", Team.SALES, "anna"))
    h.refused(cmd.ConfirmAlignment, SALES_LEAD, "no_csfs", team=Team.SALES)
    h.do(cmd.DefineCsf, MARKETING_LEAD, csf=csf("M1", Team.MARKETING, "mark"))
    h.refused(cmd.ConfirmAlignment, MARKETING_LEAD, "not_team_lead", team=Team.SALES)
    h.do(cmd.ConfirmAlignment, SALES_LEAD, team=Team.SALES)
    h.refused(cmd.ConfirmAlignment, SALES_LEAD, "already_decided", team=Team.SALES)
    error = h.refused(cmd.StartExecution, AUTHOR, "alignment_missing")
    assert "marketing" in error.message
    # A change after a confirmation voids it: the lead confirmed a different joint plan.
    h.do(cmd.DefineCsf, MARKETING_LEAD, csf=csf("M2", Team.MARKETING, "mark"))
    assert h.state.aligned == ()
    h.do(cmd.ConfirmAlignment, SALES_LEAD, team=Team.SALES)
    h.do(cmd.ConfirmAlignment, MARKETING_LEAD, team=Team.MARKETING)
    h.refused(cmd.StartExecution, "intern", "not_plan_author")
    started = h.do(cmd.StartExecution, SALES_LEAD)
    assert started[0].csf_ids == ("S1", "M1", "M2")  # type: ignore[union-attr]
    h.refused(cmd.ConfirmAlignment, SALES_LEAD, "wrong_phase", team=Team.SALES)
    h.refused(cmd.StartExecution, AUTHOR, "wrong_phase")


def test_owners_and_coaches_can_change_while_executing() -> None:
    h = executing()
    h.do(cmd.AssignCsfOwner, SALES_LEAD, csf_id="S1", owner="ben", coach="sales-coach")
    assert h.state.csf("S1").owner == "ben"  # type: ignore[union-attr]
    h.refused(cmd.AssignCsfOwner, SALES_LEAD, "invalid_csf", csf_id="S1", owner="ben", coach="ben")
    h.refused(cmd.AssignCsfOwner, SALES_LEAD, "invalid_csf", csf_id="S1", owner="")
    h.refused(cmd.AssignCsfOwner, "mark", "not_team_lead", csf_id="S1", owner="mark")
    h.refused(cmd.AssignCsfOwner, SALES_LEAD, "unknown_csf", csf_id="S7", owner="ben")
    h.refused(cmd.RemoveCsf, SALES_LEAD, "wrong_phase", csf_id="S1")
