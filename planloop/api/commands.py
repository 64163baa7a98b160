"""Every domain command a person or system sends to a plan, as an endpoint:

    POST /cycles/{cycle_id}/plans/{unit_id}/commands/{CommandName}

The body is the command's own fields (validated by the domain's pydantic types) without ``actor`` and
``at``: the actor is the authenticated principal, and the plan's workflow stamps the time with its own clock.
The command goes to the plan's workflow as the Update of its name; the answer is the workflow's
``CommandResult``, or the domain's refusal as a 4xx ``{"code", "message"}``.
"""

# No `from __future__ import annotations` here: FastAPI reads each endpoint's body type from its
# annotations, and the body types are built at import time, one per command.

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.commands import Command, CommandBase
from workflows import plan_id
from workflows.contracts import CommandResult, PlanCommand

from .auth import Principal, Role, authenticated
from .errors import ERROR_RESPONSES, INVALID_REQUEST, PLAN_NOT_FOUND, UNAVAILABLE, ApiError
from .idempotency import HEADER, once

R = Role

#: Who may send each command (admins may send all). Commands the cycle and the clock send (OpenPlan,
#: ClosePlan, Tick) are not offered. The domain then checks the person: the plan's author, the gate's
#: approvers, a CSF's owner, ...
COMMAND_ROLES: Mapping[str, frozenset[Role]] = {
    name: frozenset(roles)
    for name, roles in {
        "ReviseStrategy": {R.PLANNER},
        "SubmitForApproval": {R.PLANNER},
        "AcceptCounterProposal": {R.PLANNER},
        "ApprovePlan": {R.APPROVER, R.LEADERSHIP},
        "RequestChanges": {R.APPROVER, R.LEADERSHIP},
        "RejectPlan": {R.APPROVER, R.LEADERSHIP},
        "DelegateApproval": {R.APPROVER, R.LEADERSHIP},
        "ReopenPlan": {R.LEADERSHIP},
        "CancelPlan": {R.PLANNER, R.LEADERSHIP},
        "StartExecutionPlanning": {R.PLANNER},
        "DefineCsf": {R.PLANNER},
        "RemoveCsf": {R.PLANNER},
        "AssignCsfOwner": {R.PLANNER},
        "ConfirmAlignment": {R.PLANNER, R.CSF_OWNER},
        "StartExecution": {R.PLANNER},
        "RecordActual": {R.PLANNER, R.CSF_OWNER, R.INTEGRATION},
        "CorrectActual": {R.PLANNER, R.CSF_OWNER, R.INTEGRATION},
        "RecordActuals": {R.PLANNER, R.CSF_OWNER, R.INTEGRATION},
        "ExplainDeviation": {R.PLANNER, R.CSF_OWNER},
        "IssueMonthlyReport": {R.PLANNER, R.LEADERSHIP},
        "HoldQuarterlyReview": {R.PLANNER, R.LEADERSHIP},
        "CloseExecutionPeriod": {R.LEADERSHIP},
        "ScorePlan": {R.LEADERSHIP},
        "RecordLesson": {R.PLANNER, R.LEADERSHIP},
        "RefineStrategy": {R.PLANNER},
    }.items()
}

# Approvals may name the seat decided for (a delegate approving for an approver): the domain checks the
# delegation and records both. Elsewhere nobody may claim to act for someone else.
_ON_BEHALF = {"ApprovePlan", "RequestChanges", "RejectPlan"}
_SET_BY_SERVER = {"type", "schema_version", "actor", "at", "on_behalf_of"}

# Statuses of the workflow's own (non-domain) refusals.
_WORKFLOW_STATUS = {"append_failed": 409, "command_mismatch": 422}


def command_classes() -> dict[str, type[CommandBase]]:
    members = get_args(get_args(Command)[0])
    return {cls.model_fields["type"].default: cls for cls in members}


def body_model(cls: type[CommandBase]) -> type[BaseModel]:
    """The request body of a command: its fields minus what the server sets."""
    keep = {n: f for n, f in cls.model_fields.items() if n not in _SET_BY_SERVER}
    if cls.model_fields["type"].default in _ON_BEHALF:
        keep["on_behalf_of"] = cls.model_fields["on_behalf_of"]
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{cls.__name__}Request",
        __config__=ConfigDict(extra="forbid", frozen=True),
        __doc__=(cls.__doc__ or f"The fields of a {cls.__name__} command.").strip(),
        **{name: (field.annotation, field) for name, field in keep.items()},
    )


# How long one Update may go unanswered before it is sent again, and how many times it is sent.
UPDATE_WAIT = 30.0
UPDATE_ATTEMPTS = 3


async def send_command(
    client: Client, cycle_id: str, unit_id: str, command: CommandBase, request_id: str
) -> CommandResult:
    """The command as its Update of the plan's workflow; refusals become ApiError."""
    name: str = command.type  # type: ignore[attr-defined]
    handle = client.get_workflow_handle(plan_id(cycle_id, unit_id))
    try:
        for _ in range(UPDATE_ATTEMPTS):
            try:
                return await asyncio.wait_for(
                    handle.execute_update(
                        name,
                        PlanCommand(command=command, request_id=request_id, source="api"),  # type: ignore[arg-type]
                        result_type=CommandResult,
                    ),
                    UPDATE_WAIT,
                )
            except TimeoutError:
                # An Update that reaches a run as it continues as new can go unanswered. Sending it again is
                # safe: the plan answers a request id it has seen (in this run or the one before) with its
                # first answer, and acts only once.
                continue
        raise ApiError(
            503,
            UNAVAILABLE,
            f"the plan's workflow did not answer within {UPDATE_ATTEMPTS * UPDATE_WAIT:.0f} s (are its "
            "workers running?); send the request again with the same Idempotency-Key: it acts only once",
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type:
            status = _WORKFLOW_STATUS.get(cause.type)
            if status is not None:
                raise ApiError(status, cause.type, cause.message) from None
            raise ApiError.domain(cause.type, cause.message) from None
        raise
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise await _no_running_plan(client, cycle_id, unit_id) from None
        raise ApiError(
            503, UNAVAILABLE, f"the workflow service did not answer ({err.message}); retry shortly"
        ) from None


async def _no_running_plan(client: Client, cycle_id: str, unit_id: str) -> ApiError:
    try:
        described = await client.get_workflow_handle(plan_id(cycle_id, unit_id)).describe()
    except RPCError:
        return ApiError(
            404,
            PLAN_NOT_FOUND,
            f"there is no plan of unit {unit_id} in cycle {cycle_id}; check both ids "
            f"(GET /cycles/{cycle_id}/plans lists the cycle's plans)",
        )
    status = described.status.name.lower() if described.status is not None else "ended"
    if described.status == WorkflowExecutionStatus.COMPLETED:
        status = "closed or cancelled"
    return ApiError(
        409, "plan_closed", f"the plan of {unit_id} in {cycle_id} has ended ({status}); it takes no commands"
    )


def _endpoint(name: str, cls: type[CommandBase], body_type: type[BaseModel], roles: frozenset[Role]) -> Any:
    async def endpoint(
        cycle_id: str,
        unit_id: str,
        body: body_type,  # type: ignore[valid-type]
        request: Request,
        principal: Annotated[Principal, Depends(authenticated)],
        idempotency_key: Annotated[
            str | None,
            Header(
                alias=HEADER,
                description="Makes the write safe to retry: the same key answers the same, and acts once.",
            ),
        ] = None,
    ) -> Response:
        principal.require_role(roles, name)
        await request.app.state.reader.require_scope(principal, cycle_id, unit_id)
        fields = {n: getattr(body, n) for n in type(body).model_fields}  # type: ignore[attr-defined]
        try:
            command = cls.model_validate({**fields, "actor": principal.principal_id, "at": datetime.now(UTC)})
        except ValidationError as err:
            raise ApiError(422, INVALID_REQUEST, f"invalid {name}: {err.errors()[0]['msg']}") from None

        async def act(request_id: str) -> tuple[int, Any]:
            result = await send_command(request.app.state.client, cycle_id, unit_id, command, request_id)
            return 200, result.model_dump(mode="json")

        return await once(request, principal, idempotency_key, act, body)

    endpoint.__name__ = f"command_{name}"
    return endpoint


def build_router() -> APIRouter:
    router = APIRouter(tags=["plan commands"])
    classes = command_classes()
    for name, roles in COMMAND_ROLES.items():
        cls = classes[name]
        router.add_api_route(
            f"/cycles/{{cycle_id}}/plans/{{unit_id}}/commands/{name}",
            _endpoint(name, cls, body_model(cls), roles),
            methods=["POST"],
            response_model=CommandResult,
            responses=ERROR_RESPONSES,
            operation_id=name,
            summary=f"{name} (roles: {', '.join(sorted(r.value for r in roles))}, admin)",
            description=(cls.__doc__ or "").strip(),
        )
    return router
