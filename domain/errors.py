"""Every refusal of the domain: one exception type and a closed list of stable codes.

The codes are part of the public contract (the API maps them to HTTP 4xx and clients branch on them), so a
code
is never renamed or reused; add a new one instead.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # plan lifecycle
    PLAN_NOT_OPENED = "plan_not_opened"
    PLAN_ALREADY_OPENED = "plan_already_opened"
    PLAN_CLOSED = "plan_closed"
    WRONG_PHASE = "wrong_phase"
    INVALID_COMMAND = "invalid_command"
    INVALID_CHAIN = "invalid_chain"
    REASON_REQUIRED = "reason_required"
    # strategy and revisions
    STRATEGY_FROZEN = "strategy_frozen"
    PLAN_IN_REVIEW = "plan_in_review"
    PLAN_SIGNED_OFF = "plan_signed_off"
    PAGE_LIMIT_EXCEEDED = "page_limit_exceeded"
    INVALID_CONTENT = "invalid_content"
    CURRENCY_MISMATCH = "currency_mismatch"
    NO_CHANGE = "no_change"
    INCOMPLETE_PLAN = "incomplete_plan"
    NO_REVISION = "no_revision"
    # approval
    NOT_PLAN_AUTHOR = "not_plan_author"
    NOT_IN_REVIEW = "not_in_review"
    STALE_REVISION = "stale_revision"
    NOT_YOUR_GATE = "not_your_gate"
    ALREADY_DECIDED = "already_decided"
    SEGREGATION_OF_DUTIES = "segregation_of_duties"
    NO_COUNTER_PROPOSAL = "no_counter_proposal"
    INVALID_COUNTER_PROPOSAL = "invalid_counter_proposal"
    UNKNOWN_REFERENCE = "unknown_reference"
    INVALID_DELEGATION = "invalid_delegation"
    NOT_LEADERSHIP = "not_leadership"
    # execution planning
    TOO_MANY_CSFS = "too_many_csfs"
    DUPLICATE_CSF = "duplicate_csf"
    UNKNOWN_CSF = "unknown_csf"
    INVALID_CSF = "invalid_csf"
    NOT_TEAM_LEAD = "not_team_lead"
    NO_CSFS = "no_csfs"
    ALIGNMENT_MISSING = "alignment_missing"
    # tracking
    MONTH_OUTSIDE_PERIOD = "month_outside_period"
    UNKNOWN_MEASURE = "unknown_measure"
    ACTUAL_EXISTS = "actual_exists"
    NO_ACTUAL_TO_CORRECT = "no_actual_to_correct"
    UNKNOWN_DEVIATION = "unknown_deviation"
    NOT_DEVIATION_OWNER = "not_deviation_owner"
    EXPLANATION_REQUIRED = "explanation_required"
    ALREADY_EXPLAINED = "already_explained"
    QUARTER_OUT_OF_RANGE = "quarter_out_of_range"
    QUARTER_NOT_ENDED = "quarter_not_ended"
    REVIEW_EXISTS = "review_exists"
    INVALID_REVIEW = "invalid_review"
    # learning and refining
    PERIOD_NOT_OVER = "period_not_over"
    SCORE_OUT_OF_RANGE = "score_out_of_range"
    ALREADY_SCORED = "already_scored"
    NOT_SCORED = "not_scored"
    UNKNOWN_LESSON = "unknown_lesson"
    UNLINKED_CHANGE = "unlinked_change"
    # cycle
    CYCLE_NOT_OPENED = "cycle_not_opened"
    CYCLE_ALREADY_OPENED = "cycle_already_opened"
    CYCLE_CLOSED = "cycle_closed"
    INVALID_ORG = "invalid_org"
    # codec
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"


class DomainError(Exception):
    """A refused command. `message` says what was wrong and what to do instead."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: str = str(code)
        self.message: str = message

    def __repr__(self) -> str:
        return f"DomainError({self.code!r}, {self.message!r})"
