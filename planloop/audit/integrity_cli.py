"""`planloop audit` commands that prove nothing was altered: verify a plan's or the store's hash chains,
publish and list signed checkpoints, check the store against a kept checkpoint, export a plan's bundle, and
verify a bundle offline.

``integrity_app`` is an unnamed typer app: planloop.audit.cli merges its commands into the `audit` group.
The online commands are clients of the HTTP API (--api-url, --token), so the terminal goes through the same
checks as every other caller. `verify` is offline: it reads only the bundle, and needs no PLANLOOP_*
setting, no database and no server.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from planloop.errors import PlanloopError

integrity_app = typer.Typer(no_args_is_help=True)

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON, for scripts.")]
ApiUrlOption = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar="PLANLOOP_API_URL",
        help="The API's base URL [default: http://PLANLOOP_API_HOST:PLANLOOP_API_PORT].",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="PLANLOOP_TOKEN", help="API token (`planloop token create`).", show_default=False
    ),
]
Cycle = Annotated[str, typer.Argument(help="The cycle, e.g. FY2027.")]
Unit = Annotated[str, typer.Argument(help="The org unit, e.g. DE-SALES.")]


def user_errors(command: F) -> F:
    """A PlanloopError is one line on stderr and exit code 1, as everywhere in the CLI."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PlanloopError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _request(api_url: str | None, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One call to the API; its error answer becomes a PlanloopError with the API's code and message."""
    import httpx

    if not token:
        raise PlanloopError("no API token: pass --token or set PLANLOOP_TOKEN (`planloop token create`)")
    if not api_url:
        from planloop.settings import load_settings

        settings = load_settings()
        api_url = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=api_url, headers=headers, timeout=600) as client:
            answer = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise PlanloopError(f"cannot reach the API at {api_url} ({exc}); is `planloop up` running?") from None
    if answer.status_code >= 400:
        try:
            body = answer.json()
        except ValueError:
            body = {}
        code = body.get("code", answer.status_code) if isinstance(body, dict) else answer.status_code
        message = body.get("message", answer.text) if isinstance(body, dict) else answer.text
        raise PlanloopError(f"{code}: {message}")
    return answer


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")


def _print_breaks(breaks: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for column in ("stream", "version", "event", "what is wrong"):
        table.add_column(column, overflow="fold")
    for b in breaks:
        table.add_row(b["stream_id"], str(b["version"]), b.get("event_id") or "-", b["reason"])
    out.print(table)


# -- online: verification ------------------------------------------------------------------------------------


@integrity_app.command("verify-plan")
@user_errors
def verify_plan(
    cycle_id: Cycle,
    unit_id: Unit,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute a plan's hash chain on the server; name the first event that does not hold."""
    report = _request(api_url, token, "GET", f"/audit/cycles/{cycle_id}/plans/{unit_id}/verify").json()
    if as_json:
        _print_json(report)
    elif report["ok"]:
        out.print(f"[green]ok[/]: {report['stream_id']}: {report['events_checked']} events, the chain holds")
    else:
        _print_breaks(report["breaks"], f"{report['stream_id']}: the chain is broken")
    if not report["ok"]:
        raise typer.Exit(2)


@integrity_app.command("verify-store")
@user_errors
def verify_store(
    api_url: ApiUrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Recompute every stream's hash chain; name the first bad event of each broken stream (auditors)."""
    report = _request(api_url, token, "GET", "/audit/verify").json()
    if as_json:
        _print_json(report)
    else:
        verdict = "[green]ok[/]" if report["ok"] else f"[red]{len(report['breaks'])} broken stream(s)[/]"
        out.print(
            f"{verdict}: {report['streams_checked']} streams, {report['events_checked']} events "
            f"verified in {report['seconds']} s"
        )
        if report["breaks"]:
            _print_breaks(report["breaks"], "Broken streams")
    if not report["ok"]:
        raise typer.Exit(2)


# -- online: checkpoints ----------------------------------------------------------------------------------


def _checkpoint_row(table: Table, document: dict[str, Any]) -> None:
    body = document["checkpoint"]
    table.add_row(
        str(body["sequence"]),
        body["published_at"],
        str(body["streams"]),
        str(body["events"]),
        body["root"][:16] + "…",
        document["digest"][:16] + "…",
    )


def _checkpoint_table(documents: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "published at", "streams", "events", "root", "digest"):
        table.add_column(column)
    for document in documents:
        _checkpoint_row(table, document)
    return table


@integrity_app.command("checkpoint")
@user_errors
def publish_checkpoint(
    save: Annotated[
        Path | None, typer.Option("--save", "-o", help="Keep the signed document in FILE.")
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish a signed checkpoint of the store now (admins); nothing new if the store has not changed."""
    answer = _request(api_url, token, "POST", "/audit/checkpoints").json()
    document = answer["checkpoint"]
    if save is not None:
        _write(save, json.dumps(document, indent=2, sort_keys=True) + "\n")
    if as_json:
        _print_json(answer)
        return
    body = document["checkpoint"]
    what = "published" if answer["published"] else "unchanged since"
    out.print(
        f"{what} checkpoint [bold]{body['sequence']}[/]: {body['streams']} streams, {body['events']} events, "
        f"root {body['root']}, key {body['key_id']}" + (f"; kept in {save}" if save else "")
    )


@integrity_app.command("checkpoints")
@user_errors
def list_checkpoints(
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="How many, newest first.")] = 20,
    save: Annotated[
        Path | None, typer.Option("--save", "-o", help="Keep the latest signed document in FILE.")
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the signed checkpoints, newest first; --save keeps the latest one to check the store against."""
    documents = _request(api_url, token, "GET", "/audit/checkpoints", params={"limit": limit}).json()
    if save is not None:
        if not documents:
            raise PlanloopError(
                "no checkpoint has been published yet; `planloop audit checkpoint` publishes one"
            )
        _write(save, json.dumps(documents[0], indent=2, sort_keys=True) + "\n")
    if as_json:
        _print_json(documents)
        return
    out.print(_checkpoint_table(documents, "Signed checkpoints"))
    if save is not None:
        out.print(f"kept checkpoint {documents[0]['checkpoint']['sequence']} in {save}")


@integrity_app.command("consistency")
@user_errors
def consistency(
    checkpoint_file: Annotated[Path, typer.Argument(help="A checkpoint document you kept (--save).")],
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Prove the store's history since a kept checkpoint was only appended to, or name what was rewritten."""
    try:
        document = json.loads(checkpoint_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanloopError(f"cannot read the checkpoint {checkpoint_file} ({exc})") from None
    report = _request(api_url, token, "POST", "/audit/checkpoints/consistency", json=document).json()
    if as_json:
        _print_json(report)
    elif report["ok"]:
        out.print(
            f"[green]ok[/]: the store extends checkpoint {report['sequence']} (latest: "
            f"{report['latest_sequence']}); {report['streams_checked']} streams, {report['events_checked']} "
            "events verified; only appended to since"
        )
    else:
        for problem in report["problems"]:
            out.print(f"[red]problem[/]: {problem}", soft_wrap=True)
        if report["rewrites"]:
            _print_breaks(report["rewrites"], f"Rewritten since checkpoint {report['sequence']}")
        if report["breaks"]:
            _print_breaks(report["breaks"], "Broken chains")
    if not report["ok"]:
        raise typer.Exit(2)


# -- export and offline verification ---------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PlanloopError(f"cannot write {path} ({exc.strerror})") from None


@integrity_app.command("export")
@user_errors
def export(
    cycle_id: Cycle,
    unit_id: Unit,
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle file to write (JSON Lines).")],
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
) -> None:
    """Export a plan's history as a self-contained bundle that `planloop audit verify` checks offline."""
    answer = _request(api_url, token, "GET", f"/audit/cycles/{cycle_id}/plans/{unit_id}/bundle")
    try:
        output.write_bytes(answer.content)
    except OSError as exc:
        raise PlanloopError(f"cannot write {output} ({exc.strerror})") from None
    lines = answer.content.count(b"\n")
    out.print(f"wrote {output}: {lines} records, {len(answer.content)} bytes")


def _trusted(value: str | None) -> Any:
    """A fingerprint (ed25519:...) as given, or the public key in a PEM file."""
    from planloop.audit import keys

    if value is None or value.startswith(keys.KEY_PREFIX):
        return value
    try:
        return keys.load_public_pem(Path(value).read_bytes())
    except OSError as exc:
        raise PlanloopError(
            f"cannot read the trusted key {value} ({exc.strerror}); pass a PEM file or a fingerprint "
            f"({keys.KEY_PREFIX}...)"
        ) from None


@integrity_app.command("verify")
@user_errors
def verify_bundle_command(
    bundle_file: Annotated[Path, typer.Argument(help="A bundle from `planloop audit export`.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Also show the plan as of this time (ISO 8601 with a zone, e.g. …Z)."),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", min=0, help="Also show the plan as of this stream version.")
    ] = None,
    trusted_key: Annotated[
        str | None,
        typer.Option(
            "--trusted-key", help="The signer you trust: its PEM file, or its fingerprint ed25519:…"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a bundle offline (no database, no server, no settings): every event's digest and the chain,
    the checkpoint's signature, the inclusion proof of the plan's head, and the key against --trusted-key."""
    from planloop.audit.bundle import plan_as_of, read_bundle, verify_bundle

    try:
        raw = bundle_file.read_bytes()
    except OSError as exc:
        raise PlanloopError(f"cannot read the bundle {bundle_file} ({exc.strerror})") from None
    bundle = read_bundle(raw)
    report = verify_bundle(bundle, _trusted(trusted_key))
    moment = _moment(as_of)
    state = None
    if moment is not None or version is not None:
        state = plan_as_of(bundle, at=moment, version=version)
    if as_json:
        shown = report.as_json()
        if state is not None:
            shown["plan"] = state.model_dump(mode="json")
        _print_json(shown)
    else:
        _print_report(report)
        if state is not None:
            _print_plan(state, moment, version)
    if not report.ok:
        raise typer.Exit(2)


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PlanloopError(f"--as-of {text!r} is not an ISO 8601 time, e.g. 2027-03-31T18:00:00Z") from None
    if moment.tzinfo is None:
        raise PlanloopError(f"--as-of {text!r} has no time zone; add one, e.g. Z or +01:00")
    return moment


def _print_report(report: Any) -> None:
    mark = "[green]ok[/]" if report.ok else "[red]FAILED[/]"
    out.print(f"{mark}: bundle of {report.stream_id}, {report.events} events")
    found = report.chain_break
    if found is None:
        out.print("  chain: every event's digest and hash hold, each links to the one before")
    else:
        at = f" (event {found.event_id})" if found.event_id else ""
        out.print(f"  [red]chain broken[/] at version {found.version}{at}: {found.reason}", soft_wrap=True)
    if report.checkpoint_sequence is None:
        out.print("  [yellow]no checkpoint[/]: nothing signed covers these events")
    else:
        signed = "signature holds" if report.signature_ok else "[red]signature does not hold[/]"
        out.print(f"  checkpoint {report.checkpoint_sequence} of {report.checkpoint_published_at}: {signed}")
        if report.covered_version is not None:
            out.print(f"  covered: versions 1 to {report.covered_version} are in the signed checkpoint")
    if report.uncovered_events:
        out.print(
            f"  [yellow]{report.uncovered_events} event(s) not yet covered by a checkpoint[/] "
            "(chain-verified only)"
        )
    if report.key_id:
        out.print(f"  signing key: {report.key_id}")
        if report.trusted is None:
            out.print(
                "  [yellow]key not checked[/]: a key shipped in the bundle proves nothing about who signed; "
                "compare the fingerprint above with the one you trust, or pass --trusted-key"
            )
        elif report.trusted:
            out.print("  [green]the key is the one you trust[/]")
    for problem in report.problems:
        out.print(f"  [red]problem[/]: {problem}", soft_wrap=True)


def _print_plan(state: Any, as_of: datetime | None, version: int | None) -> None:
    when = " and ".join(
        x
        for x in (f"time {as_of.isoformat()}" if as_of else "", f"version {version}" if version else "")
        if x
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Plan as of", when or "the end")
    grid.add_row("Stream version", str(state.version))
    grid.add_row("Phase", f"{state.phase.value if state.phase else '-'} (iteration {state.iteration})")
    revision = state.revisions[-1] if state.revisions else None
    if revision is not None:
        grid.add_row("Revision", f"{revision.number} by {revision.author}: {revision.reason}")
    grid.add_row("Signed off", str(state.signed_off_revision or "-"))
    grid.add_row("Decisions", str(len(state.decisions)))
    out.print(grid)
