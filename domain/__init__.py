"""planloop's domain: the planning loop as a pure decider.

    decide(state, command) -> list[Event]   (raises DomainError)
    evolve(state, event)   -> PlanState
    replay(events)         -> PlanState

No I/O, no clock, no randomness: the workflow, the auditors' replay and the read models all run this code.
"""

from domain.approval import (
    BudgetCut,
    CounterProposal,
    Decision,
    Delegation,
    Gate,
    GateDecisionRecord,
    GateMode,
    TargetChange,
)
from domain.base import OrgLevel
from domain.calendar import CycleCalendar, GateDeadline
from domain.clock import Deadline, DeadlineKind, next_deadlines
from domain.codec import canonical_json, current_schema_version, decode_event, encode_event
from domain.commands import Command, CommandAdapter
from domain.decider import decide
from domain.errors import DomainError, ErrorCode
from domain.events import Event, EventAdapter, EventListAdapter
from domain.evolve import evolve, replay
from domain.execution import MAX_CSFS_PER_TEAM, Csf, MonthTarget, Team
from domain.execution_rules import monthly_report_of
from domain.money import Money
from domain.org import OrgHierarchy, OrgUnit
from domain.scoring import Lesson, LessonLink, PlanScore, ScoreEvidence, results
from domain.state import Phase, PlanState, initial_state
from domain.strategy import (
    PAGE_WORD_LIMIT,
    BudgetLine,
    ForecastLine,
    PlanContent,
    Program,
    RevisionDiff,
    SmartGoal,
    StrategyChoices,
    StrategyComponents,
    content_hash,
    diff_content,
)
from domain.tracking import (
    REVENUE,
    ImprovementAction,
    MeasureStatus,
    MonthlyReport,
    QuarterlyReview,
    StatusThresholds,
    extrapolate_year_end,
)

__all__ = [
    "MAX_CSFS_PER_TEAM",
    "PAGE_WORD_LIMIT",
    "REVENUE",
    "BudgetCut",
    "BudgetLine",
    "Command",
    "CommandAdapter",
    "CounterProposal",
    "Csf",
    "CycleCalendar",
    "Deadline",
    "DeadlineKind",
    "Decision",
    "Delegation",
    "DomainError",
    "ErrorCode",
    "Event",
    "EventAdapter",
    "EventListAdapter",
    "ForecastLine",
    "Gate",
    "GateDeadline",
    "GateDecisionRecord",
    "GateMode",
    "ImprovementAction",
    "Lesson",
    "LessonLink",
    "MeasureStatus",
    "Money",
    "MonthTarget",
    "MonthlyReport",
    "OrgHierarchy",
    "OrgLevel",
    "OrgUnit",
    "Phase",
    "PlanContent",
    "PlanScore",
    "PlanState",
    "Program",
    "QuarterlyReview",
    "RevisionDiff",
    "ScoreEvidence",
    "SmartGoal",
    "StatusThresholds",
    "StrategyChoices",
    "StrategyComponents",
    "TargetChange",
    "Team",
    "canonical_json",
    "content_hash",
    "current_schema_version",
    "decide",
    "decode_event",
    "diff_content",
    "encode_event",
    "evolve",
    "extrapolate_year_end",
    "initial_state",
    "monthly_report_of",
    "next_deadlines",
    "replay",
    "results",
]
