"""What every command of the `planloop` CLI shares: the error decorator (one line on stderr, exit 1), the
consoles, the options naming the API and the token, the HTTP client that turns the API's
``{"code", "message"}`` answers into that one line, and the printing of answers.

What the API sends is data, never rich markup: an actor ``svc[erp]`` must show as sent, and one holding
``[/]`` must not break the command. So data goes into a line through ``rich.markup.escape`` and into a
table through ``add_data_row`` (every cell plain text unless it is a ``Text`` styled on purpose)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from planloop.errors import PlanloopError
from planloop.settings import load_settings

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """A PlanloopError is one line on stderr and exit code 1, without a traceback. The message is printed
    as text (never read as rich markup), so an API message with brackets in it shows as sent."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PlanloopError as exc:
            err.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON, for scripts.")]
ApiUrlOption = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar="PLANLOOP_API_URL",
        help="The API's base URL (default: http://PLANLOOP_API_HOST:PLANLOOP_API_PORT).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="PLANLOOP_TOKEN", help="API token (`planloop token create`).", show_default=False
    ),
]
IdempotencyOption = Annotated[
    str | None, typer.Option("--idempotency-key", help="Makes the write safe to retry.", show_default=False)
]


def api_client(api_url: str | None, token: str | None, timeout: float = 60) -> httpx.Client:
    """A client of the API at ``api_url`` (default: this machine's settings) sending ``token``."""
    if not token:
        raise PlanloopError("no API token: pass --token or set PLANLOOP_TOKEN (`planloop token create`)")
    if not api_url:
        settings = load_settings()
        api_url = f"http://{settings.api_host}:{settings.api_port}"
    return httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """The JSON answer of ``method path`` (None for an empty one); an error answer is a PlanloopError
    reading ``code: message``."""
    try:
        answer = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise PlanloopError(
            f"cannot reach the API at {client.base_url} ({exc}); is `planloop up` running?"
        ) from None
    is_json = answer.headers.get("content-type", "").startswith("application/json")
    try:
        body = answer.json() if is_json and answer.content else None
    except ValueError:
        body = None
    if answer.status_code >= 400:
        if isinstance(body, dict) and "message" in body:
            raise PlanloopError(f"{body.get('code', answer.status_code)}: {body['message']}")
        raise PlanloopError(f"HTTP {answer.status_code}: {answer.text[:300] or answer.reason_phrase}")
    return body


def ask(api_url: str | None, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One request to the API, with a client of its own: the JSON answer (see ``call``)."""
    with api_client(api_url, token) as client:
        return call(client, method, path, **kwargs)


def idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def print_json(data: Any) -> None:
    """One line of JSON on stdout: what `--json` prints, for scripts (``jq`` reads it)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def answer(data: Any, as_json: bool, *shown: RenderableType) -> None:
    """What a command prints: ``data`` as one line of JSON with --json, else what is ``shown`` to a person
    (tables, or lines of rich markup with the API's data in them escaped)."""
    if as_json:
        print_json(data)
        return
    for renderable in shown:
        out.print(renderable, highlight=False)


def add_data_row(table: Table, *cells: str | Text) -> None:
    """A table row of the API's data: a str cell is shown as it is (never read as markup); a ``Text``
    cell keeps its style (``Text("paused", style="yellow")``)."""
    table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in cells))


def short_time(value: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM`` for tables ('-' when absent)."""
    return value[:16].replace("T", " ") if value else "-"
