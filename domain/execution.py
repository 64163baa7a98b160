"""Execution planning: at most three critical success factors per team, owners and coaches, alignment."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import Field

from domain.base import Amount, DomainModel, Month
from domain.errors import DomainError, ErrorCode

# "No more than three": the few things a team must do exceptionally well.
MAX_CSFS_PER_TEAM = 3


class Team(StrEnum):
    SALES = "sales"
    MARKETING = "marketing"


class MonthTarget(DomainModel):
    month: Month
    target: Amount


class Csf(DomainModel):
    csf_id: str = Field(min_length=1)
    team: Team
    name: str
    measure: str
    unit: str
    monthly_targets: tuple[MonthTarget, ...]
    owner: str
    coach: str | None = None
    # Some measures improve downwards (cost per lead, churn); status compares the other way round.
    higher_is_better: bool = True

    def target_for(self, month: str) -> Decimal | None:
        return next((t.target for t in self.monthly_targets if t.month == month), None)


def check_csf(csf: Csf, existing: tuple[Csf, ...], months: tuple[str, ...]) -> None:
    if any(c.csf_id == csf.csf_id for c in existing):
        raise DomainError(
            ErrorCode.DUPLICATE_CSF,
            f"a CSF with id '{csf.csf_id}' already exists; remove it first or choose another id",
        )
    same_team = [c for c in existing if c.team == csf.team]
    if len(same_team) >= MAX_CSFS_PER_TEAM:
        raise DomainError(
            ErrorCode.TOO_MANY_CSFS,
            f"{csf.team.value} already has {MAX_CSFS_PER_TEAM} CSFs "
            f"({', '.join(c.csf_id for c in same_team)}); focus on the few that matter and remove one first",
        )
    if not csf.owner.strip() or not csf.measure.strip():
        raise DomainError(
            ErrorCode.INVALID_CSF, f"CSF '{csf.csf_id}' needs a measure and an accountable owner; name both"
        )
    target_months = [t.month for t in csf.monthly_targets]
    if sorted(target_months) != list(months):
        raise DomainError(
            ErrorCode.INVALID_CSF,
            f"CSF '{csf.csf_id}' needs exactly one target for each month {months[0]}..{months[-1]} of the "
            "execution period",
        )
    if csf.coach is not None and csf.coach == csf.owner:
        raise DomainError(
            ErrorCode.INVALID_CSF,
            f"the coach of CSF '{csf.csf_id}' holds the owner accountable, so it must be someone else; "
            "name another coach or none",
        )
