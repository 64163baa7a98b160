"""Bulk import of monthly actuals: ``POST /cycles/{cycle_id}/actuals/import``, a CSV file or JSON rows.

Every row is checked before anything is sent, and a plan's rows are applied only if all of them are valid
("all or nothing per plan"); every bad row is reported with its line and the reason. The checks, in order:

1. the row itself: unit, measure, month (YYYY-MM) and a numeric value present, a known correction flag;
2. the file: the unit has a plan in the cycle (and is in the caller's scopes), and a (unit, measure, month)
   appears once;
3. the plan: its stored events are folded with ``domain.replay`` into a local copy of its state, and each
   of its rows is decided on that copy in file order (``domain.decide``, then ``evolve``), exactly as the
   plan's workflow will decide them: an unknown measure, a month outside the period, another currency, an
   actual that already exists (without the correction flag), a wrong phase, ...

Then each valid plan's rows are sent to its workflow as one RecordActuals command (one Update; its
events are stored in one transaction), plans side by side: the plan's workflow decides the rows again, in
file order, and records all of them or none. The command's request id is derived from the import's
Idempotency-Key and the plan's rows, so a retried import never records a row twice: a plan whose request
id is already in its stream is counted as applied before, and one still in flight is answered by the
workflow's own dedup.

If someone else changes a plan between the check and the send (e.g. records the same month by hand), the
plan's workflow refuses the command and nothing of that plan's rows is recorded; the plan is checked again
to name the refused line and why, and reported "refused" like a plan with a bad row. A failure of the
workflow service mid-way is answered 503 and not stored, so the same request with the same key continues
where it stopped (plans already applied are found by their request ids).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ValidationError

from domain import DomainError, PlanState, decide, decode_event, evolve, replay
from domain.commands import MAX_ACTUALS_PER_COMMAND, CorrectActual, MonthlyActual, RecordActual, RecordActuals
from domain.cycle import CycleState
from domain.errors import ErrorCode
from workflows import plan_id

from .auth import Principal, Role, authenticated
from .commands import send_command
from .errors import CYCLE_NOT_FOUND, ERROR_RESPONSES, INVALID_REQUEST, UNAVAILABLE, ApiError, ErrorBody
from .idempotency import HEADER, once

router = APIRouter(tags=["actuals"])

IMPORT_ROLES = frozenset({Role.INTEGRATION, Role.PLANNER, Role.CSF_OWNER})
COLUMNS = ("unit", "measure", "month", "value", "currency", "source", "correction", "reason")
REQUIRED_COLUMNS = ("unit", "measure", "month", "value")
MAX_ROWS = 50_000
# Plans whose commands are in flight side by side (each plan's workflow decides its own).
CONCURRENT_PLANS = 16
DEFAULT_SOURCE = "import"

_TRUE = {"true", "yes", "y", "1", "x"}
_FALSE = {"false", "no", "n", "0", ""}
_MONTH_DIGITS = 7


# -- the answer ---------------------------------------------------------------------------------------------


class RowError(BaseModel):
    """A row that cannot be applied: where it is, and what is wrong with it."""

    line: int
    unit: str | None
    measure: str | None = None
    month: str | None = None
    code: str
    reason: str


class PlanImport(BaseModel):
    """What happened to one plan's rows: all recorded, or none."""

    unit_id: str
    rows: int
    # applied: every row recorded (now, or by an earlier attempt of the same import: already_applied);
    # refused: a row was bad (or the plan changed after the check and refused one), nothing recorded.
    status: Literal["applied", "refused"]
    applied: int
    already_applied: int = 0
    not_applied_lines: list[int] = []


class ImportReport(BaseModel):
    """The answer to an import: 200 every row applied, 207 some plans applied and some not, 422 none.

    A plan counts as applied when all its rows are recorded, also by an earlier attempt of the same
    import (``already_applied``)."""

    cycle_id: str
    import_id: str
    rows: int
    applied: int
    plans: list[PlanImport]
    errors: list[RowError]


# -- rows as sent -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRow:
    """One row as read from the file: its line (CSV: the file's line; JSON: its position, from 1)."""

    line: int
    fields: dict[str, Any]


@dataclass(frozen=True)
class ActualRow:
    line: int
    unit: str
    measure: str
    month: str
    value: Decimal
    currency: str | None
    source: str
    correction: bool
    reason: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.unit, self.measure, self.month)

    def digest(self) -> str:
        parts = (self.unit, self.measure, self.month, str(self.value), self.currency or "", self.source)
        canonical = "|".join((*parts, str(self.correction), self.reason))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def actual(self) -> MonthlyActual:
        return MonthlyActual(
            measure=self.measure,
            month=self.month,
            value=self.value,
            currency=self.currency,
            source=self.source,
            correction=self.correction,
            reason=self.reason,
        )

    def command(self, actor: str, at: datetime) -> RecordActual | CorrectActual:
        """The row on its own, as the plan's workflow decides it inside RecordActuals."""
        return self.actual().as_command(actor, at)


def parse_csv(raw: bytes) -> list[RawRow]:
    """Rows of a CSV file (UTF-8, with or without BOM; comma or semicolon); the header names the columns."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ApiError(
            422, INVALID_REQUEST, f"the CSV file is not UTF-8 (byte {err.start}); save it as UTF-8"
        ) from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ApiError(422, INVALID_REQUEST, "the CSV file is empty; send a header and rows") from None
    names = [h.strip().lower() for h in header]
    _check_columns(names)
    rows: list[RawRow] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(names):
                rows.append(
                    RawRow(reader.line_num, {"__error__": f"{len(cells)} cells, {len(names)} columns"})
                )
                continue
            rows.append(_clean(reader.line_num, dict(zip(names, cells, strict=False))))
            if len(rows) > MAX_ROWS:
                raise ApiError(422, INVALID_REQUEST, f"more than {MAX_ROWS} rows; split the file")
    except csv.Error as err:
        raise ApiError(
            422, INVALID_REQUEST, f"line {reader.line_num} of the CSV file is unreadable: {err}"
        ) from None
    return rows


def _check_columns(names: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    unknown = [n for n in names if n not in COLUMNS and n != "line"]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if missing or unknown or doubled:
        problems = []
        if missing:
            problems.append(f"lacks {', '.join(missing)}")
        if unknown:
            problems.append(f"has unknown column(s) {', '.join(repr(u) for u in unknown)}")
        if doubled:
            problems.append(f"repeats {', '.join(doubled)}")
        raise ApiError(
            422,
            INVALID_REQUEST,
            f"the header {' and '.join(problems)}; the columns are {', '.join(COLUMNS)} "
            f"({', '.join(REQUIRED_COLUMNS)} required)",
        )


def parse_json(raw: bytes) -> list[RawRow]:
    """Rows of a JSON body: ``{"rows": [...]}`` or a bare list of row objects. Numbers keep every digit.

    A row may carry ``line`` (e.g. its line in a file the sender split up); otherwise its position counts.
    """
    try:
        data = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(422, INVALID_REQUEST, f"the body is not valid JSON: {err}") from None
    if isinstance(data, dict):
        data = data.get("rows")
    if not isinstance(data, list):
        raise ApiError(422, INVALID_REQUEST, 'send {"rows": [{"unit": ..., "measure": ..., ...}, ...]}')
    if len(data) > MAX_ROWS:
        raise ApiError(422, INVALID_REQUEST, f"more than {MAX_ROWS} rows; split them up")
    rows = []
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            rows.append(RawRow(index, {"__error__": "the row is not an object"}))
            continue
        line = item.get("line")
        number = line if isinstance(line, int) and not isinstance(line, bool) and line > 0 else index
        fields = {k: v for k, v in item.items() if k != "line"}
        unknown = sorted(k for k in fields if k not in COLUMNS)
        if unknown:
            fields["__error__"] = (
                f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(COLUMNS)}"
            )
        rows.append(_clean(number, fields))
    return rows


def storable(text: str) -> bool:
    """Whether PostgreSQL can store the text: no NUL, no unpaired surrogate (from JSON escapes)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_UNSTORABLE = "the row holds a character that cannot be stored (a NUL or an unpaired surrogate)"


def _clean(line: int, fields: dict[str, Any]) -> RawRow:
    if all(storable(k) and (not isinstance(v, str) or storable(v)) for k, v in fields.items()):
        return RawRow(line, fields)
    return RawRow(line, {"__error__": _UNSTORABLE})


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def read_row(raw: RawRow, default_source: str) -> ActualRow | RowError:
    """The row as an actual, or what is wrong with it (the first problem found)."""
    f = raw.fields
    unit, measure, month = _text(f.get("unit")), _text(f.get("measure")), _text(f.get("month"))

    def bad(code: str, reason: str) -> RowError:
        return RowError(
            line=raw.line,
            unit=unit or None,
            measure=measure or None,
            month=month or None,
            code=code,
            reason=reason,
        )

    if "__error__" in f:
        return bad("invalid_row", str(f["__error__"]))
    for name, text in (("unit", unit), ("measure", measure), ("month", month)):
        if not text:
            return bad("missing_field", f"{name} is missing")
    if len(month) != _MONTH_DIGITS or month[4] != "-" or not (month[:4] + month[5:]).isdigit():
        return bad("invalid_month", f"month {month!r} is not a month as YYYY-MM, e.g. 2027-03")
    if not 1 <= int(month[5:]) <= 12:
        return bad("invalid_month", f"month {month!r} has no month {month[5:]}; use 01 to 12")
    value = f.get("value")
    try:
        if isinstance(value, bool) or value is None or _text(value) == "":
            raise InvalidOperation
        amount = Decimal(_text(value).replace("_", ""))
        if not amount.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        return bad("invalid_value", f"value {_text(value)!r} is not a number; write it like 1234.56")
    correction = _text(f.get("correction")).lower()
    if correction not in _TRUE | _FALSE:
        return bad("invalid_correction", f"correction {correction!r} must be true or false")
    currency = _text(f.get("currency")).upper() or None
    return ActualRow(
        line=raw.line,
        unit=unit,
        measure=measure,
        month=month,
        value=amount,
        currency=currency,
        source=_text(f.get("source")) or default_source,
        correction=correction in _TRUE,
        reason=_text(f.get("reason")),
    )


# -- checking and applying --------------------------------------------------------------------------------


@dataclass
class _Plan:
    unit_id: str
    rows: list[ActualRow] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # every line naming the unit, readable or not
    errors: list[RowError] = field(default_factory=list)
    request_id: str = ""  # of its RecordActuals command, set once its rows are read
    already: bool = False  # recorded by an earlier attempt of this same import


class ActualsImport:
    """One import: ``check`` every row, then ``apply`` the plans without a bad row."""

    def __init__(
        self, request: Request, principal: Principal, cycle_id: str, request_id: str, default_source: str
    ) -> None:
        self.app = request.app
        self.principal = principal
        self.cycle_id = cycle_id
        self.request_id = request_id
        self.default_source = default_source
        self.errors: list[RowError] = []
        self.plans: dict[str, _Plan] = {}
        self.row_count = 0
        # Set when the workflow service failed mid-way: the import is then answered with 503, not stored,
        # so a retry with the same key continues where this one stopped.
        self.unavailable: str | None = None

    def plan_request_id(self, plan: _Plan) -> str:
        """The import's key, the unit and a digest of its rows (lines and content, in file order)."""
        rows = hashlib.sha256("\n".join(f"{r.line}:{r.digest()}" for r in plan.rows).encode()).hexdigest()
        return f"{self.request_id}:{plan.unit_id}:{rows[:16]}"

    async def check(self, raw_rows: list[RawRow]) -> None:
        self.row_count = len(raw_rows)
        cycle: CycleState = await self.app.state.reader.cycle(self.cycle_id)
        assert cycle.hierarchy is not None
        planned = {p.unit_id for p in cycle.plans}
        seen: dict[tuple[str, str, str], int] = {}
        for raw in raw_rows:
            row = read_row(raw, self.default_source)
            if isinstance(row, RowError):
                self._refuse(row)
                continue
            plan = self.plans.setdefault(row.unit, _Plan(row.unit))
            plan.rows.append(row)
            plan.lines.append(row.line)
            if row.unit not in planned:
                plan.errors.append(
                    self._error(row, "unknown_unit", f"unit {row.unit} has no plan in cycle {self.cycle_id}")
                )
                continue
            if row.key in seen:
                plan.errors.append(
                    self._error(
                        row,
                        "duplicate_row",
                        f"duplicate of line {seen[row.key]}: each month of a measure appears once per unit",
                    )
                )
                continue
            seen[row.key] = row.line
        for plan in self.plans.values():
            if len(plan.rows) > MAX_ACTUALS_PER_COMMAND:
                row = plan.rows[MAX_ACTUALS_PER_COMMAND]
                plan.errors.append(
                    self._error(
                        row,
                        "too_many_rows",
                        f"unit {plan.unit_id} has more than {MAX_ACTUALS_PER_COMMAND} rows, which are "
                        "recorded in one step; import them in two files",
                    )
                )
            plan.request_id = self.plan_request_id(plan)
            if plan.unit_id in planned:
                await self._check_scope(plan)
        await asyncio.gather(*(self._check_plan(p) for p in self.plans.values() if not p.errors))
        for plan in self.plans.values():
            self.errors.extend(plan.errors)
        self.errors.sort(key=lambda e: e.line)

    def _refuse(self, error: RowError) -> None:
        # A row without a readable unit refuses the plan it names, if it names one.
        if error.unit:
            plan = self.plans.setdefault(error.unit, _Plan(error.unit))
            plan.errors.append(error)
            plan.lines.append(error.line)
        else:
            self.errors.append(error)

    @staticmethod
    def _error(row: ActualRow, code: str, reason: str) -> RowError:
        return RowError(
            line=row.line, unit=row.unit, measure=row.measure, month=row.month, code=code, reason=reason
        )

    async def _check_scope(self, plan: _Plan) -> None:
        try:
            await self.app.state.reader.require_scope(self.principal, self.cycle_id, plan.unit_id)
        except ApiError as err:
            plan.errors.extend(self._error(r, "forbidden", err.message) for r in plan.rows)

    async def _check_plan(self, plan: _Plan) -> None:
        """Decide the plan's rows in file order on a local copy of its state, as its workflow will."""
        request_ids, state = await self._plan_state(plan)
        if plan.request_id in request_ids:
            plan.already = True
            return
        plan.errors.extend(self._decide(state, plan.rows))

    async def _plan_state(self, plan: _Plan) -> tuple[set[str], PlanState]:
        """The request ids the plan has answered, and its state: its stored events folded."""
        stored = await self.app.state.store.read_stream(plan_id(self.cycle_id, plan.unit_id))
        state: PlanState = replay(decode_event(e.type, e.schema_version, e.data) for e in stored)  # type: ignore[misc]
        return {e.metadata.get("request_id") for e in stored}, state

    def _decide(self, state: PlanState, rows: list[ActualRow]) -> list[RowError]:
        errors: list[RowError] = []
        now = datetime.now(UTC)
        for row in rows:
            try:
                command = row.command(self.principal.principal_id, now)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                errors.append(self._error(row, "invalid_row", f"{where}: {first['msg']}"))
                continue
            try:
                events = decide(state, command)
            except DomainError as err:
                message = err.message
                if err.code == ErrorCode.ACTUAL_EXISTS:  # the row's own way to correct, not the command's
                    message = (
                        f"{row.measure} for {row.month} is already recorded; to correct it, set the row's "
                        "correction to true and give a reason"
                    )
                errors.append(self._error(row, str(err.code), message))
                continue
            for event in events:
                state = evolve(state, event)
        return errors

    async def apply(self) -> tuple[int, ImportReport]:
        gate = asyncio.Semaphore(CONCURRENT_PLANS)
        valid = [p for p in self.plans.values() if not p.errors]
        results = await asyncio.gather(*(self._apply_plan(p, gate) for p in valid))
        if self.unavailable is not None:
            done = sum(r.applied for r in results)
            raise ApiError(
                503,
                UNAVAILABLE,
                f"the workflow service failed during the import ({self.unavailable}) after {done} row(s) "
                f"were applied; send the same request with the same {HEADER} to continue (rows already "
                "applied are not recorded again)",
            )
        self.errors.sort(key=lambda e: e.line)
        outcomes = {r.unit_id: r for r in results}
        plans = [
            outcomes.get(p.unit_id) or self._refused(p)
            for p in sorted(self.plans.values(), key=lambda p: p.unit_id)
        ]
        report = ImportReport(
            cycle_id=self.cycle_id,
            import_id=self.request_id,
            rows=self.row_count,
            applied=sum(p.applied for p in plans),
            plans=plans,
            errors=self.errors,
        )
        if not self.errors and all(p.status == "applied" for p in plans):
            return 200, report
        if any(p.status == "applied" for p in plans):
            return 207, report
        return 422, report

    @staticmethod
    def _refused(plan: _Plan) -> PlanImport:
        return PlanImport(
            unit_id=plan.unit_id,
            rows=len(plan.lines),
            status="refused",
            applied=0,
            not_applied_lines=sorted(plan.lines),
        )

    async def _apply_plan(self, plan: _Plan, gate: asyncio.Semaphore) -> PlanImport:
        """Send the plan's rows as one RecordActuals command: all are recorded, or none."""
        applied = PlanImport(unit_id=plan.unit_id, rows=len(plan.rows), status="applied", applied=0)
        if plan.already:
            return applied.model_copy(update={"already_applied": len(plan.rows)})
        command = RecordActuals(
            actor=self.principal.principal_id,
            at=datetime.now(UTC),
            actuals=tuple(r.actual() for r in plan.rows),
        )
        async with gate:
            try:
                await send_command(
                    self.app.state.client, self.cycle_id, plan.unit_id, command, plan.request_id
                )
            except ApiError as err:
                if err.status >= 500:
                    self.unavailable = err.message
                    return applied
                await self._changed_after_check(plan, err)
                return self._refused(plan)
            except Exception as err:  # the workflow service: timeouts, lost connections
                self.unavailable = f"{type(err).__name__}: {err}"
                return applied
        return applied.model_copy(update={"applied": len(plan.rows)})

    async def _changed_after_check(self, plan: _Plan, refusal: ApiError) -> None:
        """The plan refused rows that passed the check: it changed in between. Name what it refuses now."""
        _, state = await self._plan_state(plan)
        errors = self._decide(state, plan.rows) or [
            self._error(row, refusal.code, refusal.message) for row in plan.rows
        ]
        prefix = "the plan changed after the check, so none of its rows were recorded: "
        self.errors.extend(e.model_copy(update={"reason": prefix + e.reason}) for e in errors)


async def run_import(
    request: Request,
    principal: Principal,
    cycle_id: str,
    rows: list[RawRow],
    request_id: str,
    default_source: str,
) -> tuple[int, Any]:
    """Check every row, apply the valid plans and answer with the report (the idempotent action)."""
    if not storable(cycle_id):
        raise ApiError(404, CYCLE_NOT_FOUND, "there is no such cycle; POST /cycles opens one")
    job = ActualsImport(request, principal, cycle_id, request_id, default_source)
    await job.check(rows)
    status, report = await job.apply()
    return status, report.model_dump(mode="json")


async def read_rows(request: Request) -> tuple[list[RawRow], bytes]:
    """The rows of the request body (CSV, JSON, or a multipart upload of either) and its raw bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(422, INVALID_REQUEST, "upload the file in the form field 'file'")
        raw = await upload.read()
        name = (upload.filename or "").lower()
        is_json = name.endswith(".json") or (upload.content_type or "").endswith("json")
        return (parse_json(raw) if is_json else parse_csv(raw)), raw
    raw = await request.body()
    if content_type.endswith("json"):
        return parse_json(raw), raw
    if content_type in ("text/csv", "text/plain", "application/csv", ""):
        return parse_csv(raw), raw
    raise ApiError(
        415,
        INVALID_REQUEST,
        f"cannot import {content_type}; send text/csv, application/json or a file upload",
    )


_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "rows": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {c: {"type": "string"} for c in (*COLUMNS, "line")},
                                "required": list(REQUIRED_COLUMNS),
                            },
                        }
                    },
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "/cycles/{cycle_id}/actuals/import",
    response_model=ImportReport,
    responses={
        **ERROR_RESPONSES,
        207: {"model": ImportReport, "description": "Some plans were applied, others refused."},
        422: {"model": ImportReport | ErrorBody, "description": "Nothing applied: bad rows, or no rows."},
    },
    openapi_extra=_BODY_DOC,
)
async def import_actuals(
    cycle_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(authenticated)],
    idempotency_key: Annotated[
        str | None,
        Header(alias=HEADER, description="Makes the import safe to retry: no row is ever recorded twice."),
    ] = None,
) -> Response:
    """Import monthly actuals of many plans: a CSV file (columns unit, measure, month, value, currency,
    source, correction, reason) or JSON rows with the same fields. A row with ``correction`` true corrects
    an existing actual (with a ``reason``). A plan's rows are applied only if all of them are valid; every
    bad row is reported with its line and reason. Roles: integration, planner, csf_owner, admin."""
    principal.require_role(IMPORT_ROLES, "importing actuals")
    rows, raw = await read_rows(request)
    key_body = {"sha256": hashlib.sha256(raw).hexdigest()}

    async def act(rid: str) -> tuple[int, Any]:
        return await run_import(request, principal, cycle_id, rows, rid, DEFAULT_SOURCE)

    return await once(request, principal, idempotency_key, act, key_body)


__all__ = [
    "ActualsImport",
    "ImportReport",
    "RawRow",
    "RowError",
    "parse_csv",
    "parse_json",
    "read_rows",
    "router",
    "run_import",
]
