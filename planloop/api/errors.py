"""Every error answer of the API: one JSON shape, ``{"code": ..., "message": ...}``, and one table that maps
the domain's stable error codes to HTTP statuses.

Clients branch on ``code`` (the domain's ``ErrorCode`` or one of the API's own codes below); ``message``
says what was wrong and what to do instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import ErrorCode
from planloop.integration.sealing import SealingKeyError
from planloop.logging import get_logger

log = get_logger(__name__)

E = ErrorCode

# The plan's state forbids the command now; it may be allowed later (or after re-reading the plan).
_CONFLICT = {
    E.PLAN_ALREADY_OPENED,
    E.PLAN_CLOSED,
    E.WRONG_PHASE,
    E.STRATEGY_FROZEN,
    E.PLAN_IN_REVIEW,
    E.PLAN_SIGNED_OFF,
    E.NOT_IN_REVIEW,
    E.STALE_REVISION,
    E.ALREADY_DECIDED,
    E.NO_COUNTER_PROPOSAL,
    E.NO_REVISION,
    E.NO_CHANGE,
    E.INCOMPLETE_PLAN,
    E.ACTUAL_EXISTS,
    E.NO_ACTUAL_TO_CORRECT,
    E.ALREADY_EXPLAINED,
    E.QUARTER_NOT_ENDED,
    E.REVIEW_EXISTS,
    E.PERIOD_NOT_OVER,
    E.ALREADY_SCORED,
    E.NOT_SCORED,
    E.NO_CSFS,
    E.ALIGNMENT_MISSING,
    E.CYCLE_ALREADY_OPENED,
    E.CYCLE_CLOSED,
}
# The authenticated principal is not the person the rules let act here.
_FORBIDDEN = {
    E.NOT_PLAN_AUTHOR,
    E.NOT_YOUR_GATE,
    E.SEGREGATION_OF_DUTIES,
    E.NOT_LEADERSHIP,
    E.NOT_TEAM_LEAD,
    E.NOT_DEVIATION_OWNER,
}
# Something the command names does not exist in the plan.
_NOT_FOUND = {E.PLAN_NOT_OPENED, E.CYCLE_NOT_OPENED}

#: HTTP status of every domain error code; anything not listed (invalid content, limits, unknown
#: references inside the request) is 422: the request itself must change.
DOMAIN_STATUS: dict[str, int] = {
    **{str(code): 422 for code in ErrorCode},
    **{str(code): 409 for code in _CONFLICT},
    **{str(code): 403 for code in _FORBIDDEN},
    **{str(code): 404 for code in _NOT_FOUND},
}

# The API's own codes, besides the domain's.
UNAUTHENTICATED = "unauthenticated"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
PLAN_NOT_FOUND = "plan_not_found"
CYCLE_NOT_FOUND = "cycle_not_found"
INVALID_REQUEST = "invalid_request"
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
IDEMPOTENCY_KEY_IN_PROGRESS = "idempotency_key_in_progress"
UNAVAILABLE = "unavailable"
SECRETS_KEY_UNUSABLE = "secrets_key_unusable"
PACED_CYCLES_OFF = "paced_cycles_off"


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    code: str
    message: str


class ApiError(Exception):
    """An answer other than success: raised anywhere in a request, rendered as ``ErrorBody``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    @classmethod
    def domain(cls, code: str, message: str) -> ApiError:
        """A domain refusal, with the status of its code (422 for a code this API does not know)."""
        return cls(DOMAIN_STATUS.get(code, 422), code, message)

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


#: Documented error answers, for the OpenAPI document of every operation.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an unknown or revoked one."},
    403: {"model": ErrorBody, "description": "The token's roles or org-unit scopes do not allow this."},
    404: {"model": ErrorBody, "description": "No such cycle or plan."},
    409: {"model": ErrorBody, "description": "The plan's state does not allow this now."},
    422: {"model": ErrorBody, "description": "The request is invalid; the message says which part."},
}


def _readable(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts) + "; fix the request and send it again"


def install_error_handlers(app: FastAPI) -> None:
    """Render ApiError, request validation errors and Starlette's own HTTP errors as ErrorBody."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(SealingKeyError)
    async def _sealing_key(request: Request, exc: SealingKeyError) -> JSONResponse:
        # The details name the server's files: for its operator (the log), not for the caller.
        log.error("shared secret unusable", path=request.url.path, error=str(exc))
        message = (
            "the server cannot open the shared secret this request needs; its operator will find why in "
            "the API's log (PLANLOOP_SECRETS_KEY_FILE)"
        )
        return JSONResponse({"code": SECRETS_KEY_UNUSABLE, "message": message}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"code": INVALID_REQUEST, "message": _readable(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = NOT_FOUND if exc.status_code == 404 else INVALID_REQUEST
        return JSONResponse(
            {"code": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )
