"""`planloop audit` commands that prove nothing was altered: verify a plan's or the store's hash chains,
publish and list signed checkpoints, check the store against a kept checkpoint, export a plan's bundle, and
verify a bundle offline.

``integrity_app`` is an unnamed typer app: planloop.audit.cli merges its commands into the `audit` group.
The online commands are clients of the HTTP API (--api-url, --token) through planloop.api.cli_client, so the
terminal goes through the same checks as every other caller. `verify` is offline: it reads only the bundle,
and needs no PLANLOOP_* setting, no database and no server.

Everything printed from an answer or a bundle is data, never rich markup: it is escaped in lines and put into
tables as plain ``Text``, so a value like ``[/oops]`` shows as it is, and a crafted one cannot print a line
that looks like a verdict.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from planloop.api.cli_client import (
    ApiUrlOption,
    JsonOption,
    TokenOption,
    api_client,
    call,
    err,
    out,
    print_json,
    user_errors,
)
from planloop.errors import PlanloopError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from domain import PlanState
    from planloop.audit.bundle import BundleReport

integrity_app = typer.Typer(no_args_is_help=True)

Cycle = Annotated[str, typer.Argument(help="The cycle, e.g. FY2027.")]
Unit = Annotated[str, typer.Argument(help="The org unit, e.g. DE-SALES.")]

#: Verifying the whole store or checking it against a checkpoint may take minutes on a large store.
SLOW = 600.0
#: `verify`'s exit codes besides 0 (verified), 1 (usage) and 2 (integrity failure).
SELF_CONSISTENT_EXIT = 3


def _request(api_url: str | None, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """The JSON answer of one call to the API (cli_client's error handling)."""
    with api_client(api_url, token, timeout=SLOW) as client:
        return call(client, method, path, **kwargs)


def _raw(api_url: str | None, token: str | None, path: str, **kwargs: Any) -> bytes:
    """The bytes of a JSON Lines answer (a bundle, an extension), with `call`'s error handling."""
    answers: list[httpx.Response] = []
    with api_client(api_url, token, timeout=SLOW) as client:
        # `call` does not parse JSON Lines; a hook keeps the raw answer for us.
        client.event_hooks["response"] = [answers.append]
        call(client, "GET", path, **kwargs)
    return answers[-1].content


def _say(markup: str, **values: object) -> None:
    """A line of ``markup`` with ``values`` (data from an answer or a bundle) escaped into its
    {placeholders}."""
    line = markup.format(**{k: escape(str(v)) for k, v in values.items()})
    out.print(line, soft_wrap=True, highlight=False)


def _cells(table: Table, *cells: object) -> None:
    table.add_row(*(Text(str(cell)) for cell in cells))


def _print_breaks(breaks: list[dict[str, Any]], title: str) -> None:
    table = Table(title=escape(title))
    for column in ("stream", "version", "event", "what is wrong"):
        table.add_column(column, overflow="fold")
    for b in breaks:
        _cells(table, b["stream_id"], b["version"], b.get("event_id") or "-", b["reason"])
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
    report = _request(api_url, token, "GET", f"/audit/cycles/{cycle_id}/plans/{unit_id}/verify")
    if as_json:
        print_json(report)
    elif report["ok"]:
        _say(
            "[green]ok[/]: {stream}: {events} events, the chain holds",
            stream=report["stream_id"],
            events=report["events_checked"],
        )
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
    report = _request(api_url, token, "GET", "/audit/verify")
    if as_json:
        print_json(report)
    else:
        verdict = "[green]ok[/]" if report["ok"] else f"[red]{len(report['breaks'])} broken stream(s)[/]"
        _say(
            verdict + ": {streams} streams, {events} events verified in {seconds} s",
            streams=report["streams_checked"],
            events=report["events_checked"],
            seconds=report["seconds"],
        )
        if report["breaks"]:
            _print_breaks(report["breaks"], "Broken streams")
    if not report["ok"]:
        raise typer.Exit(2)


# -- online: checkpoints ----------------------------------------------------------------------------------


def _checkpoint_table(documents: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "published at", "streams", "events", "root", "digest"):
        table.add_column(column)
    for document in documents:
        body = document["checkpoint"]
        _cells(
            table,
            body["sequence"],
            body["published_at"],
            body["streams"],
            body["events"],
            str(body["root"])[:16] + "…",
            str(document["digest"])[:16] + "…",
        )
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
    answer = _request(api_url, token, "POST", "/audit/checkpoints")
    document = answer["checkpoint"]
    if save is not None:
        _write(save, json.dumps(document, indent=2, sort_keys=True) + "\n")
    if as_json:
        print_json(answer)
        return
    body = document["checkpoint"]
    what = "published" if answer["published"] else "unchanged since"
    _say(
        what
        + " checkpoint [bold]{sequence}[/]: {streams} streams, {events} events, root {root}, key {key}{kept}",
        sequence=body["sequence"],
        streams=body["streams"],
        events=body["events"],
        root=body["root"],
        key=body["key_id"],
        kept=f"; kept in {save}" if save else "",
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
    documents = _request(api_url, token, "GET", "/audit/checkpoints", params={"limit": limit})
    if save is not None:
        if not documents:
            raise PlanloopError(
                "no checkpoint has been published yet; `planloop audit checkpoint` publishes one"
            )
        _write(save, json.dumps(documents[0], indent=2, sort_keys=True) + "\n")
    if as_json:
        print_json(documents)
        return
    out.print(_checkpoint_table(documents, "Signed checkpoints"))
    if save is not None:
        sequence = documents[0]["checkpoint"]["sequence"]
        out.print(Text(f"kept checkpoint {sequence} in {save}"))


@integrity_app.command("public-key")
@user_errors
def public_key(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the PEM here (for --trusted-key).")
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The key that signs checkpoints: its fingerprint and PEM, as this server says. Compare the fingerprint
    with one you got out of band before you trust it."""
    key = _request(api_url, token, "GET", "/audit/public-key")
    if output is not None:
        _write(output, key["pem"])
    if as_json:
        print_json(key)
        return
    _say("signing key: {key}", key=key["key_id"])
    out.print(Text(key["pem"].rstrip("\n")))
    if output is not None:
        _say("wrote {path}", path=output)


@integrity_app.command("rotate-key")
@user_errors
def rotate_key(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data folder of `planloop up`.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Replace the key that signs checkpoints (on the API's host, where PLANLOOP_AUDIT_KEY_FILE lives).

    The old public key is listed in `<key file>.trusted`, so checkpoints it signed keep verifying; its
    private half is gone. A running API signs with the new key from its next checkpoint. Hand auditors
    the new fingerprint out of band; they pass --trusted-key for the old and the new key across it."""
    from planloop.audit.keys import rotate_signing_key, trusted_file
    from planloop.settings import load_settings

    key_file = load_settings(data_dir=data_dir).audit_key_path
    rotation = rotate_signing_key(key_file)
    answer = {"key_file": str(key_file), "retired": rotation.retired, "signing": rotation.signing}
    if as_json:
        print_json(answer)
        return
    _say("rotated the checkpoint signing key {path}", path=key_file)
    _say("  retired: {key} (listed in {trusted})", key=rotation.retired, trusted=trusted_file(key_file))
    _say("  signing: {key}", key=rotation.signing)
    out.print("Give auditors the new fingerprint out of band (`planloop audit public-key`).", highlight=False)


@integrity_app.command("consistency")
@user_errors
def consistency(
    checkpoint_file: Annotated[Path, typer.Argument(help="A checkpoint document you kept (--save).")],
    trusted_key: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-key",
            help="The signer's public key (PEM file) or fingerprint (ed25519:...) you trust; repeat it for "
            "the old and the new key across a key rotation.",
        ),
    ] = None,
    later: Annotated[
        int | None, typer.Option("--to", help="Prove up to this checkpoint (default: the latest).")
    ] = None,
    by_server: Annotated[
        bool,
        typer.Option(
            "--by-server",
            help="Let the server check instead: it also re-walks every stream's whole chain, but you trust "
            "its verdict.",
        ),
    ] = False,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Prove, on this machine, that the store's history since a kept checkpoint was only appended to: the
    later checkpoint's signed heads extend the kept one's, every appended event re-hashed here. Exit 0 when
    proved with --trusted-key, 3 when it holds but no key was given to trust, 2 when it does not hold."""
    try:
        document = json.loads(checkpoint_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanloopError(f"cannot read the checkpoint {checkpoint_file} ({exc})") from None
    if by_server:
        _server_consistency(api_url, token, document, as_json)
        return
    from planloop.audit.checkpoints import CheckpointError, SignedCheckpoint
    from planloop.audit.extension import PROVED, SELF_CONSISTENT, prove_extension, read_extension

    try:
        kept = SignedCheckpoint.from_document(document)
    except CheckpointError as exc:
        raise PlanloopError(f"{checkpoint_file} is not a checkpoint document ({exc})") from None
    params = {"to": later} if later is not None else {}
    raw = _raw(api_url, token, f"/audit/checkpoints/{kept.sequence}/extension", params=params)
    try:
        extension = read_extension(raw)
    except CheckpointError as exc:
        raise PlanloopError(f"the server's answer cannot be read: {exc}") from None
    trusted = [t for k in trusted_key or [] if (t := _trusted(k)) is not None]
    report = prove_extension(kept, extension, trusted)
    if as_json:
        print_json(report.as_json())
    else:
        _print_extension(report)
    if report.verdict != PROVED:
        raise typer.Exit(3 if report.verdict == SELF_CONSISTENT else 2)


def _print_extension(report: Any) -> None:
    from planloop.audit.extension import PROVED, SELF_CONSISTENT

    if report.verdict in (PROVED, SELF_CONSISTENT):
        head = "[green]PROVED[/]" if report.verdict == PROVED else "[yellow]HOLDS, SIGNER NOT CHECKED[/]"
        _say(
            head + ": checkpoint {later} extends the kept checkpoint {kept}: its {streams} streams were only "
            "appended to ({grown} grew, {new} new, {events} events appended, each re-hashed here)",
            later=report.later_sequence,
            kept=report.kept_sequence,
            streams=report.streams_kept,
            grown=report.streams_grown,
            new=report.streams_new,
            events=report.events_appended,
        )
        _say("  signing key: {key}", key=report.key_id)
        if report.verdict == SELF_CONSISTENT:
            _say(
                "  [yellow]key not checked[/]: the signatures were checked with the server's own key; "
                "compare the fingerprint above with the one you trust, or pass --trusted-key"
            )
        return
    _say(
        "[red]FAILED[/]: checkpoint {later} does not prove the kept checkpoint {kept} was only appended to",
        later=report.later_sequence,
        kept=report.kept_sequence,
    )
    for problem in report.problems:
        _say("  [red]problem[/]: {problem}", problem=problem)


def _server_consistency(api_url: str | None, token: str | None, document: Any, as_json: bool) -> None:
    report = _request(api_url, token, "POST", "/audit/checkpoints/consistency", json=document)
    if as_json:
        print_json(report)
    elif report["ok"]:
        _say(
            "[green]ok[/]: the store extends checkpoint {sequence} (latest: {latest}); {streams} streams, "
            "{events} events verified; only appended to since (the server's verdict)",
            sequence=report["sequence"],
            latest=report["latest_sequence"],
            streams=report["streams_checked"],
            events=report["events_checked"],
        )
    else:
        for problem in report["problems"]:
            _say("[red]problem[/]: {problem}", problem=problem)
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
    content = _raw(api_url, token, f"/audit/cycles/{cycle_id}/plans/{unit_id}/bundle")
    try:
        output.write_bytes(content)
    except OSError as exc:
        raise PlanloopError(f"cannot write {output} ({exc.strerror})") from None
    records = content.count(b"\n")
    out.print(Text(f"wrote {output}: {records} records, {len(content)} bytes"))


_FINGERPRINT = re.compile(r"ed25519:[0-9a-f]{64}")


def _trusted(value: str | None) -> Ed25519PublicKey | str | None:
    """A fingerprint (ed25519:...) as given, or the public key in a PEM file."""
    from planloop.audit import keys

    if value is None:
        return None
    if value.startswith(keys.KEY_PREFIX):
        if not _FINGERPRINT.fullmatch(value):
            raise PlanloopError(
                f"--trusted-key {value!r} is not a fingerprint: expected {keys.KEY_PREFIX} and 64 lowercase "
                "hex digits, as GET /audit/public-key answers key_id"
            )
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
    allow_uncovered: Annotated[
        bool,
        typer.Option(
            "--allow-uncovered",
            help="Accept events after the signed checkpoint as chain-verified only (anyone who rewrites "
            "the bundle can redo their hashes).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Verify a bundle offline (no database, no server, no settings): every event's digest and the chain,
    the checkpoint's signature, the inclusion proof of the plan's head, and the signer against
    --trusted-key.

    Exit codes: 0 verified (a checkpoint signed by the trusted key covers every event); 2 failed; 3
    self-consistent but the signer not checked (no --trusted-key: anyone could have made such a bundle);
    1 a usage error, or a plan that cannot be shown as of --as-of/--version.
    """
    from planloop.audit.bundle import FAILED, VERIFIED, BundleError, plan_as_of, read_bundle, verify_bundle

    try:
        raw = bundle_file.read_bytes()
    except OSError as exc:
        raise PlanloopError(f"cannot read the bundle {bundle_file} ({exc.strerror})") from None
    bundle = read_bundle(raw)
    report = verify_bundle(bundle, _trusted(trusted_key), allow_uncovered=allow_uncovered)
    moment = _moment(as_of)
    state: PlanState | None = None
    unshown: BundleError | None = None
    if moment is not None or version is not None:
        try:
            state = plan_as_of(bundle, at=moment, version=version)
        except BundleError as exc:
            unshown = exc
    if as_json:
        shown = report.as_json()
        if state is not None:
            shown["plan"] = state.model_dump(mode="json")
        if unshown is not None:
            shown["plan_error"] = str(unshown)
        print_json(shown)
    else:
        _print_report(report)
        if state is not None:
            _print_plan(state, moment, version)
    if unshown is not None:
        err.print(Text.assemble(("error: ", "bold red"), str(unshown)), highlight=False, soft_wrap=True)
    if report.verdict == FAILED:
        raise typer.Exit(2)
    if unshown is not None:
        raise typer.Exit(1)
    if report.verdict != VERIFIED:
        raise typer.Exit(SELF_CONSISTENT_EXIT)


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


def _print_report(report: BundleReport) -> None:
    from planloop.audit.bundle import FAILED, VERIFIED

    mark = {
        VERIFIED: "[bold green]VERIFIED[/]",
        FAILED: "[bold red]FAILED[/]",
    }.get(report.verdict, "[bold yellow]SELF-CONSISTENT, SIGNER NOT CHECKED[/]")
    _say(mark + ": bundle of {stream}, {events} events", stream=report.stream_id, events=report.events)
    found = report.chain_break
    if found is None:
        _say("  chain: every event's digest and hash hold, each links to the one before")
    else:
        _say(
            "  [red]chain broken[/] at version {version}{at}: {reason}",
            version=found.version,
            at=f" (event {found.event_id})" if found.event_id else "",
            reason=found.reason,
        )
    if report.checkpoint_sequence is None:
        _say("  [red]no checkpoint[/]: nothing signed covers these events")
    else:
        signed = "signature holds" if report.signature_ok else "[red]signature does not hold[/]"
        _say(
            "  checkpoint {sequence} of {published}: " + signed,
            sequence=report.checkpoint_sequence,
            published=report.checkpoint_published_at,
        )
        if report.covered_version is not None:
            _say(
                "  covered: versions 1 to {version} are in the signed checkpoint",
                version=report.covered_version,
            )
    if report.uncovered_events and report.covered_version is not None:
        accepted = (
            "[yellow]accepted as chain-verified only (--allow-uncovered)[/]"
            if report.allow_uncovered
            else "[red]not accepted without --allow-uncovered[/]"
        )
        _say(
            "  [yellow]{count} event(s) after version {version} not covered by a checkpoint[/]: " + accepted,
            count=report.uncovered_events,
            version=report.covered_version,
        )
    if report.key_id:
        _say("  signing key: {key}", key=report.key_id)
        if report.trusted is None:
            _say(
                "  [yellow]key not checked[/]: the bundle only holds together with itself, and a key shipped "
                "in it proves nothing about who signed (anyone can make such a bundle); compare the "
                "fingerprint above with the one you trust, or pass --trusted-key"
            )
        elif report.trusted:
            _say("  [green]the key is the one you trust[/]")
    for problem in report.problems:
        _say("  [red]problem[/]: {problem}", problem=problem)


def _print_plan(state: PlanState, as_of: datetime | None, version: int | None) -> None:
    when = " and ".join(
        x
        for x in (f"time {as_of.isoformat()}" if as_of else "", f"version {version}" if version else "")
        if x
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows = [
        ("Plan as of", when or "the end"),
        ("Stream version", str(state.version)),
        ("Phase", f"{state.phase.value if state.phase else '-'} (iteration {state.iteration})"),
    ]
    revision = state.revisions[-1] if state.revisions else None
    if revision is not None:
        rows.append(("Revision", f"{revision.number} by {revision.author}: {revision.reason}"))
    rows += [("Signed off", str(state.signed_off_revision or "-")), ("Decisions", str(len(state.decisions)))]
    for name, value in rows:
        grid.add_row(name, Text(value))
    out.print(grid)
