"""`planloop actuals import FILE --cycle C`: a CSV or JSON file of monthly actuals, through the HTTP API.

The file is read and split by unit here, and each plan's rows go to the API as one request (JSON rows
that keep their line in the file), a few plans at a time, with a progress bar. That keeps the API's
guarantee (a plan's rows are applied all or nothing) and gives each request a size the API answers in
seconds. Every request carries an Idempotency-Key derived from the file's content (or --idempotency-key)
and the unit, so running the same command again never records a row twice.
"""

from __future__ import annotations

import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from planloop.errors import PlanloopError
from planloop.progress import progress_bar

from .cli_client import ApiUrlOption, JsonOption, TokenOption, api_client, err, out, user_errors

actuals_app = typer.Typer(help="Monthly actuals: bulk import through the HTTP API.", no_args_is_help=True)

# Plans sent side by side (the API records each plan's rows in one step, as one command to its workflow).
PARALLEL_PLANS = 4


def _read(file: Path) -> tuple[list[Any], bytes]:
    from .actuals import parse_csv, parse_json
    from .errors import ApiError

    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise PlanloopError(f"cannot read {file} ({exc.strerror})") from None
    try:
        rows = parse_json(raw) if file.suffix.lower() == ".json" else parse_csv(raw)
    except ApiError as exc:
        raise PlanloopError(f"{file}: {exc.message}") from None
    return rows, raw


def _chunks(rows: list[Any]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """The rows by unit, each keeping its line; and the rows unreadable here (their plans are not sent)."""
    by_unit: dict[str, list[dict[str, Any]]] = {}
    unreadable: list[dict[str, Any]] = []
    for row in rows:
        unit = str(row.fields.get("unit") or "").strip()
        if "__error__" in row.fields:
            reason = str(row.fields["__error__"])
            unreadable.append(
                {"line": row.line, "unit": unit or None, "code": "invalid_row", "reason": reason}
            )
            continue
        fields = {k: (None if v is None else str(v)) for k, v in row.fields.items()}
        by_unit.setdefault(unit, []).append({**fields, "line": row.line})
    return by_unit, unreadable


def _send(
    client: httpx.Client, cycle: str, key: str, unit: str, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    try:
        answer = client.post(
            f"/cycles/{cycle}/actuals/import",
            json={"rows": rows},
            headers={"Idempotency-Key": f"{key}:{unit}"[:255]},
            timeout=600,
        )
    except httpx.HTTPError as exc:
        raise PlanloopError(
            f"cannot reach the API at {client.base_url} ({exc}); run the same command again to continue"
        ) from None
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    if answer.status_code in (200, 207) or (answer.status_code == 422 and "plans" in body):
        return body  # type: ignore[no-any-return]
    code = body.get("code", answer.status_code) if isinstance(body, dict) else answer.status_code
    raise PlanloopError(
        f"{code}: {body.get('message', answer.text) if isinstance(body, dict) else answer.text}"
    )


@actuals_app.command("import")
@user_errors
def import_actuals(
    file: Annotated[
        Path, typer.Argument(help="CSV (unit, measure, month, value, currency, source, ...) or JSON.")
    ],
    cycle: Annotated[str, typer.Option("--cycle", help="The cycle, e.g. FY2027.")],
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Default: derived from the file's content.")
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import monthly actuals: a plan's rows are applied only if all are valid; every bad row is listed with
    its line and reason. Exits 1 when a row was not applied."""
    rows, raw = _read(file)
    key = idempotency_key or f"actuals:{cycle}:{hashlib.sha256(raw).hexdigest()[:32]}"
    by_unit, unreadable = _chunks(rows)
    refused = {e["unit"] for e in unreadable if e["unit"]}
    chunks = [(unit, chunk) for unit, chunk in by_unit.items() if unit not in refused]
    reports: list[dict[str, Any]] = [
        {
            "applied": 0,
            "errors": unreadable,
            "plans": [
                {
                    "unit_id": u,
                    "rows": len(by_unit.get(u, [])),
                    "status": "refused",
                    "applied": 0,
                    "already_applied": 0,
                }
                for u in sorted(refused)
            ],
        }
    ]
    with (
        api_client(api_url, token) as client,
        progress_bar(err, hidden=as_json) as progress,
    ):
        task = progress.add_task(f"importing {file.name}", total=sum(len(c) for _, c in chunks))
        with ThreadPoolExecutor(PARALLEL_PLANS) as pool:
            futures = {pool.submit(_send, client, cycle, key, unit, chunk): chunk for unit, chunk in chunks}
            for future in as_completed(futures):
                reports.append(future.result())
                progress.advance(task, len(futures[future]))
    merged = {
        "cycle_id": cycle,
        "rows": len(rows),
        "applied": sum(r["applied"] for r in reports),
        "plans": sorted((p for r in reports for p in r["plans"]), key=lambda p: p["unit_id"]),
        "errors": sorted((e for r in reports for e in r["errors"]), key=lambda e: e["line"]),
    }
    if as_json:
        sys.stdout.write(json.dumps(merged) + "\n")
    else:
        _print(merged)
    if merged["errors"] or any(p["status"] != "applied" for p in merged["plans"]):
        raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    table = Table(title=f"cycle {report['cycle_id']}: {report['applied']} of {report['rows']} rows applied")
    for column in ("unit", "rows", "status", "applied", "before"):
        table.add_column(column)
    for p in report["plans"]:
        style = "green" if p["status"] == "applied" else "red"
        table.add_row(
            p["unit_id"],
            str(p["rows"]),
            f"[{style}]{p['status']}[/]",
            str(p["applied"]),
            str(p["already_applied"]),
        )
    out.print(table)
    if report["errors"]:
        errors = Table(title=f"{len(report['errors'])} bad row(s): their plans were not imported")
        for column in ("line", "unit", "reason"):
            errors.add_column(column)
        for e in report["errors"]:
            errors.add_row(str(e["line"]), e["unit"] or "-", e["reason"])
        out.print(errors)
