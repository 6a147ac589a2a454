"""`partnerboard`: the command line, and the place where the parts are wired together.

Commands: ``check-config``, ``serve`` (board + collectors + routes), ``collect``
(collectors without the board), ``backfill``, ``export`` (the review report as CSV),
``simulate`` (the stand-in partner APIs) and
``demo`` (simulator + serve with the shipped ``partners.toml``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import httpx
import typer

from partnerboard.core.config import CONFIG_ENV, Config, ConfigError, config_path, load_config, logs
from partnerboard.core.config.known_at_start import secret_names
from partnerboard.core.config.secrets import missing_secrets, scrub
from partnerboard.core.store import DATABASE_URL_ENV, StoreBusyError, database_url, display_url, duckdb_path
from partnerboard.core.store.ownership import Ownership, OwnershipError, acquire

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Partnerboard: a shared, trusted board of partnership KPIs, API health and SLAs.",
)
log = logging.getLogger("partnerboard.cli")
TOKEN_ENV = "PARTNERBOARD_API_TOKEN"

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help=f"Partnership config file [env: {CONFIG_ENV}]"),
]
DbOpt = Annotated[
    str | None,
    typer.Option("--database-url", help=f"SQLAlchemy URL [env: {DATABASE_URL_ENV}]"),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, err=True, fg="red")
    return typer.Exit(code)


def _load(config: str | None) -> Config:
    try:
        return load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _source(cfg: Config, source_id: str, command: str):
    """(partner, source) of a source id, or the command's refusal naming the known ids."""
    try:
        return cfg.source(source_id)
    except KeyError as exc:
        raise _fail(f"partnerboard {command}: {exc.args[0]}") from None


# Held for the life of the process: the lock is released when the handle is closed.
_ownership: list[Ownership] = []


def _own_database(url: str, command: str, board_url: str | None = None) -> None:
    path = duckdb_path(url)
    if path is None:
        return
    try:
        _ownership.append(acquire(path, command, board_url))
    except OwnershipError as exc:
        raise _fail(f"partnerboard {command}: {exc}") from None


def _open_store(url: str, command: str):
    """The store, or a clean exit that names the process holding the DuckDB file."""
    from partnerboard.core.store import open_store

    try:
        return open_store(url)
    except StoreBusyError as exc:
        raise _fail(f"partnerboard {command}: {exc}") from None


@app.command("check-config")
def check_config(config: ConfigOpt = None) -> None:
    """Validate the config file without starting anything. Exit 0 if valid, 1 if not."""
    cfg = _load(config)
    path = config_path(config)
    endpoints = sum(len(p.endpoints) for p in cfg.partners)
    pages = sum(1 for p in cfg.partners if p.statuspage)
    sources = sum(len(p.sources) for p in cfg.partners)
    typer.echo(
        f"{path.name}: OK: {cfg.partnership.name} ({cfg.partnership.timezone}), "
        f"{len(cfg.partners)} partners, {endpoints} endpoints, {pages} status pages, "
        f"{sources} data sources, {len(cfg.alerts.receivers)} alert receivers"
    )
    for warning in missing_secrets(secret_names(cfg)):
        typer.secho(f"{path.name}: warning: {warning}", err=True, fg="yellow")
    if sources:
        typer.echo("A valid file can still map a partner's records wrongly: try each source with "
                   "`partnerboard check-source ID` (read-only) before trusting it.")


@app.command("check-source")
def check_source(
    source: Annotated[str, typer.Argument(help="Source id from the config, e.g. marketplace_orders")],
    pages: Annotated[int, typer.Option(min=1, max=50, help="Pages to fetch")] = 1,
    since: Annotated[str | None, typer.Option(
        help="Incremental lower bound (default: the source's start, as a first run)")] = None,
    rows: Annotated[int, typer.Option(min=0, help="Mapped records to print")] = 10,
    config: ConfigOpt = None,
) -> None:
    """Try a source before trusting it: fetch its first page(s), show what would be stored.

    Uses the source's real auth, paging and mapping, and prints the requests sent (secrets
    scrubbed), the mapped records, what would be quarantined and why, and unused fields.
    Writes nothing, so it runs beside a board that owns the store. Exit 0 when the mapping
    holds, 1 when a request failed or records would be quarantined beyond the degraded
    threshold."""
    import json

    from rich.console import Console
    from rich.table import Table

    from partnerboard.collectors.check_source import check_source as run_check

    logs.setup("WARNING")
    cfg = _load(config)
    partner, src = _source(cfg, source, "check-source")
    start = _when(since, cfg, "--since") if since else None
    out = Console(highlight=False, soft_wrap=True, width=160)
    out.print(f"check-source {src.id}: {partner.name}, table {src.resource}; nothing is written")
    found = run_check(cfg, src.id, pages=pages, since=start)
    for i, r in enumerate(found.requests, 1):
        out.print(f"request {i}: {r.method} {r.url} -> HTTP {r.status}", markup=False)
        out.print("  headers: " + ", ".join(f"{k}: {v}" for k, v in r.headers.items()), markup=False)
    if found.error:
        typer.secho(f"check-source {src.id}: {found.error}", err=True, fg="red")
        raise typer.Exit(1)
    out.print(f"read {found.read} records on {len(found.page_sizes)} page(s): {len(found.mapped)} map "
              f"cleanly, {len(found.rejected)} would go to quarantine ({found.rejected_pct:.1f} %)")
    if found.mapped and rows:
        columns = list(found.mapped[0])
        table = Table(*columns, title=f"the first {min(rows, len(found.mapped))} records as stored")
        for row in found.mapped[:rows]:
            table.add_row(*("" if row[c] is None else scrub(str(row[c])) for c in columns))
        out.print(table)
    if found.rejected:
        out.print("would be quarantined:")
        examples = {}
        for reason, raw in found.rejected:
            examples.setdefault(reason, raw)
        for reason, count in found.reasons().most_common(10):
            out.print(f"  {count} × {reason}", markup=False)
            out.print("      e.g. " + scrub(json.dumps(examples[reason], default=str))[:300], markup=False)
    if found.drift:
        out.print("fields the mapping does not use (drift; map them if they matter): "
                  + ", ".join(sorted(found.drift)), markup=False)
    for note in found.notes:
        out.print(f"note: {note}", markup=False)
    allowed = src.degraded_quarantine_pct
    allowed = cfg.collection.degraded_quarantine_pct if allowed is None else allowed
    raise typer.Exit(1 if found.rejected_pct > allowed else 0)


@app.command()
def serve(
    config: ConfigOpt = None,
    database: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8501,
    collect: Annotated[bool, typer.Option(help="Run the collectors in this process")] = True,
) -> None:
    """Serve the board, /healthz and the collectors in one process (owns the database)."""
    _serve(config, database, host, port, collect)


def _serve(config: str | None, database: str | None, host: str, port: int, collect: bool,
           history_days: int = 0) -> None:
    """``serve``; with ``history_days``, the demo's simulated probe history is imported in
    the background (``partnerboard.demo.HistoryImport``) while the board answers."""
    import uvicorn

    from partnerboard.server import create_app

    logs.setup()
    logs.enable_stack_dumps()
    _load(config)
    path = str(config_path(config).resolve())
    url = database_url(database)
    board = f"http://{host}:{port}"
    _own_database(url, "serve", board)
    os.environ[CONFIG_ENV] = path
    os.environ[DATABASE_URL_ENV] = url
    typer.echo(f"Partnerboard: {board}  (database {display_url(url)}; Ctrl+C to stop)")
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal with the
    # handler that was installed before it: make that a clean exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    try:
        # proxy_headers off: uvicorn would believe X-Forwarded-For from any loopback client;
        # the board's guard believes it only from [server] trusted_proxies (partnerboard/web/guard.py).
        uvicorn.run(create_app(path, url, collect=collect, served_at=board, history_days=history_days),
                    host=host, port=port,
                    log_level="warning", access_log=False, proxy_headers=False, server_header=False,
                    timeout_graceful_shutdown=5)
    except StoreBusyError as exc:
        raise _fail(f"partnerboard serve: {exc}") from None


@app.command()
def collect(
    config: ConfigOpt = None,
    database: DbOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Run every source once and exit")] = False,
    source: Annotated[list[str] | None, typer.Option(
        "--source", "-s", help="With --once: run only this source (repeatable), e.g. "
        "marketplace_orders, probe:payments, statuspage:marketplace")] = None,
) -> None:
    """Run the collectors without the board. SIGTERM finishes the running job and exits 0.

    ``--once --source ID`` is the shell's "Run now" for one source (the Data page's
    button needs ``partnerboard serve``); its runs are recorded with trigger manual."""
    from partnerboard import background
    from partnerboard.collectors.scheduler import job_ids, run_all_once
    from partnerboard.core.metrics import maintenance
    from partnerboard.core.store import close_all, heartbeat, runs

    logs.setup()
    logs.enable_stack_dumps()
    cfg = _load(config)
    if source and not once:
        raise _fail("partnerboard collect: --source needs --once (the schedule always runs "
                    "every source)")
    known = job_ids(cfg)
    unknown = [s for s in source or [] if s not in known]
    if unknown:  # before taking the database: a typo must not wait on, or hold, the file
        raise _fail(f"partnerboard collect: unknown source {unknown[0]!r}; valid ids: "
                    f"{', '.join(known)}")
    url = database_url(database)
    _own_database(url, "collect")
    store = _open_store(url, "collect")
    with store.engine.begin() as conn:
        maintenance.sync_windows(conn, cfg)
    if once:
        beating = heartbeat.Heartbeat(store.engine, "collect")  # its runs are owned, so kept
        runs.abandon_interrupted(store.engine)
        try:
            outcomes = run_all_once(store, cfg, only=source or None)
        finally:
            beating.stop()
        close_all()
        failed = [o for o in outcomes if o.status == "failed"]
        degraded = [o for o in outcomes if o.status == "degraded"]
        typer.echo(f"collected: {len(outcomes) - len(failed) - len(degraded)} runs ok, "
                   f"{len(degraded)} degraded, {len(failed)} failed")
        for o in degraded:  # committed, but too much went to quarantine
            typer.secho(f"  {o.source} degraded (run {o.run_id}): {o.rejected} of {o.read} records "
                        f"({o.rejected_pct:.1f} %) quarantined; top reasons: {o.top_reasons()}",
                        err=True, fg="yellow")
        for o in failed:
            typer.secho(f"  run {o.run_id}: {o.error}", err=True, fg="red")
        raise typer.Exit(1 if failed or degraded else 0)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    jobs = background.build(store, cfg)
    jobs.start()
    log.info("collecting database=%s jobs=%d", display_url(url), len(jobs.scheduler.get_jobs()))
    stop.wait()
    log.info("stopping: waiting for running jobs to finish")
    jobs.stop(wait=True)
    close_all()
    log.info("stopped")


@app.command()
def backfill(
    source: Annotated[str, typer.Option("--source", "-s", help="Source id from the config")],
    since: Annotated[str, typer.Option(help="Start, e.g. 2026-01-01 or 2026-01-01T00:00:00+01:00")],
    until: Annotated[str | None, typer.Option(help="End (default: now)")] = None,
    config: ConfigOpt = None,
    database: DbOpt = None,
) -> None:
    """Re-read a source's history from --since, window by window, with a progress bar.

    Each window commits on its own, so an interrupted backfill keeps what it finished;
    running it again converges on the same store (writes are idempotent)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from partnerboard.collectors.sources import backfill_windows, run_backfill
    from partnerboard.core.store import close_all, heartbeat, runs

    logs.setup("WARNING")
    cfg = _load(config)
    _, src = _source(cfg, source, "backfill")
    start, end = _when(since, cfg, "--since"), _when(until, cfg, "--until") if until else None
    url = database_url(database)
    _own_database(url, "backfill")
    store = _open_store(url, "backfill")
    beating = heartbeat.Heartbeat(store.engine, "backfill")  # its runs are owned, so kept
    runs.abandon_interrupted(store.engine)
    from partnerboard.core.vocabulary import timeutil

    total = len(backfill_windows(src, start, end or timeutil.utcnow()))
    totals = {"read": 0, "written": 0, "quarantined": 0, "requests": 0, "retries": 0}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[records]} records"), TimeElapsedColumn()) as bar:
        task = bar.add_task(f"backfill {source}", total=total, records=0)

        def on_window(i: int, n: int, r) -> None:
            totals["read"] += r.read
            totals["written"] += r.written
            totals["quarantined"] += r.quarantined
            totals["requests"] += r.requests
            totals["retries"] += r.retries
            bar.update(task, completed=i, records=totals["read"])
            # One line per committed window: the bar is for people, this is for logs and
            # for whoever waits on the backfill (the bar draws nothing when not a terminal).
            bar.console.print(f"window {i}/{n} {r.status}: {r.read} read, {r.written} written, "
                              f"{r.quarantined} quarantined (run {r.run_id})", highlight=False)

        def on_start(i: int, n: int, run_id: str) -> None:
            bar.console.print(f"window {i}/{n} started (run {run_id})", highlight=False)

        try:
            results = run_backfill(store, cfg, source, start, end, on_window=on_window,
                                   on_window_started=on_start)
        finally:
            beating.stop()
    close_all()
    failed = [r for r in results if r.status == "failed"]
    degraded = [r for r in results if r.status == "degraded"]
    typer.echo(
        f"backfill {source}: {len(results)} window(s), {totals['read']} records read, "
        f"{totals['written']} written, {totals['quarantined']} quarantined, "
        f"{totals['requests']} requests, {totals['retries']} retries"
        + (f"; {len(degraded)} window(s) degraded" if degraded else "")
    )
    if degraded:
        rejected, read = sum(r.rejected for r in degraded), sum(r.read for r in degraded)
        reasons = sum((r.reasons for r in degraded), Counter())
        typer.secho(f"  degraded windows quarantined {rejected} of {read} records; top reasons: "
                    + "; ".join(f"{k} ({v})" for k, v in reasons.most_common(3)), err=True, fg="yellow")
    if failed:
        raise _fail(f"window failed (run {failed[0].run_id}): {failed[0].error}; run the same "
                    "command again to resume: finished windows are kept")
    if degraded:
        raise typer.Exit(1)


@app.command()
def export(
    period: Annotated[str, typer.Option("--period", "-p",
                                        help="2026-10, 2026-Q3, 2026-W44, or 2026-07-01..2026-10-01")],
    out: Annotated[str, typer.Option("--out", "-o", help="File to write ('-' for stdout)")],
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="csv (the report), incidents (every incident of the period, CSV), "
                               "pdf or html (the review pack)")] = "csv",
    appendix: Annotated[bool, typer.Option(
        "--appendix", help="End the review pack with every incident of the period (pdf, html)")] = False,
    partner: Annotated[str | None, typer.Option(help="One partner only (default: both)")] = None,
    sep: Annotated[str, typer.Option(help="Separator: ',' or ';' (Excel in pl-PL etc.)")] = ",",
    decimal: Annotated[str, typer.Option(help="Decimal mark: '.' or ','")] = ".",
    server: Annotated[str | None, typer.Option(
        help="Fetch from a running board (e.g. http://127.0.0.1:8501) instead of the store")] = None,
    token: Annotated[str | None, typer.Option(
        help=f"Your personal API token, for a running board [env: {TOKEN_ENV}]",
        envvar=TOKEN_ENV, show_envvar=False)] = None,
    config: ConfigOpt = None,
    database: DbOpt = None,
) -> None:
    """Write the review report of a period as CSV, its incidents as CSV, or its review pack
    as PDF or HTML: the same files as the Reports page.

    While `partnerboard serve` owns the DuckDB file, the report comes from that server's
    /api/reports route (found through the file's owner record), signed with your
    personal API token."""
    from partnerboard.core.reports import report
    from partnerboard.core.store import close_all
    from partnerboard.core.store.ownership import current_owner

    cfg = _load(config)
    if fmt not in ("csv", "incidents", "pdf", "html"):
        raise _fail(f"partnerboard export: --format {fmt!r} is not one of csv, incidents, pdf, html")
    csv_kind = fmt in ("csv", "incidents")
    if not csv_kind and partner:
        raise _fail("partnerboard export: the review pack covers both partners; --partner is for "
                    "--format csv or incidents")
    if csv_kind and appendix:
        raise _fail(f"partnerboard export: --appendix ends the review pack with every incident; it is for "
                    f"--format pdf or html (--format {fmt} is a CSV file)")
    try:
        wanted = report.check_request(cfg, period, partner, sep=sep, decimal=decimal)
    except report.ReportRequestError as exc:
        raise _fail(f"partnerboard export: {exc}") from None
    url = database_url(database)
    path = duckdb_path(url)
    owner = current_owner(path) if path is not None and server is None else None
    if owner is not None:
        if not owner.get("url"):
            raise _fail(
                f"partnerboard export: {path} is owned by `partnerboard {owner.get('command')}` "
                f"(pid {owner.get('pid')}), which serves no reports. Stop it and run export "
                "again, or run `partnerboard serve` instead and export with --server URL")
        server = owner["url"]
    if server is not None:
        params = {"sep": sep, "decimal": decimal} | ({"partner": partner} if partner else {}) | (
            {"appendix": "1"} if appendix else {})
        if not token:
            raise _fail(
                f"partnerboard export: the board at {server} owns the store, so the report comes "
                f"from it and it wants to know who asks: pass your personal API token with --token "
                f"or {TOKEN_ENV} (make one on the board's Account page, or stop the board and run "
                "`partnerboard users token EMAIL`)")
        try:
            route = f"{wanted.label}/incidents.csv" if fmt == "incidents" else f"{wanted.label}.{fmt}"
            r = httpx.get(f"{server.rstrip('/')}/api/reports/{route}", params=params,
                          headers={"Authorization": f"Bearer {token}"}, timeout=120)
        except httpx.HTTPError as exc:
            raise _fail(f"partnerboard export: the board at {server} did not answer ({exc}); "
                        "is `partnerboard serve` running?") from None
        if r.status_code != 200:
            raise _fail(f"partnerboard export: the board at {server} answered {r.status_code}: "
                        f"{scrub(r.text[:300])}")
        body, source = r.content, server
    else:
        from partnerboard.core.access import audit, cli_user
        from partnerboard.core.reports import incident_csv
        from partnerboard.core.review import pack, pdf, reading

        store = _open_store(url, "export")
        with store.engine.begin() as conn:
            if fmt == "csv":
                df = reading.report_for(conn, cfg, wanted, partner_id=partner)
                what = f"{wanted.label} report"
            elif fmt == "incidents":
                found = reading.incidents_for(conn, cfg, wanted).only(partner)
                what = f"{wanted.label} incidents"
            else:
                made = pack.build(conn, cfg, wanted, appendix=appendix)
                what = f"{wanted.label} review pack ({fmt})"
            audit.record(conn, cli_user().email, "export", partner=partner, target=what,
                         detail=f"cli; partner={partner or 'all'} sep={sep}"
                         + ("; with the incident appendix" if appendix else ""))
        close_all()
        if fmt == "csv":
            body = report.to_csv(df, sep=sep, decimal=decimal)
        elif fmt == "incidents":
            body = incident_csv.to_csv(cfg, wanted, found, sep=sep, decimal=decimal)
        else:
            document = pack.render(made)
            body = pdf.render(document) if fmt == "pdf" else document.encode()
        source = display_url(url)
    if out == "-":
        sys.stdout.buffer.write(body)
    else:
        with open(out, "wb") as fh:
            fh.write(body)
        kind = {"csv": "report", "incidents": "incidents"}.get(fmt, f"review pack ({fmt})")
        typer.echo(f"{out}: {kind} {wanted.label} from {source}, {len(body):,} bytes", err=True)


users_app = typer.Typer(no_args_is_help=True, help="People who may sign in to the board (built-in sign-in, "
                        "and roles of OIDC users). Works on the store while no board owns it; while "
                        "one runs, admins use its Users page.")
app.add_typer(users_app, name="users")
PartnerOpt = Annotated[str, typer.Option("--partner", help="Partner id the person works for, or 'both'")]
PasswordOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from stdin (default: generate one and print it once)")]


def _users_store(config: str | None, database: str | None, command: str):
    cfg = _load(config)
    url = database_url(database)
    return cfg, _open_store(url, f"users {command}")


def _password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated?)"""
    import secrets as _secrets

    if from_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    return _secrets.token_urlsafe(15), True


def _user_change(action) -> None:
    from partnerboard.core.access import Forbidden, users
    from partnerboard.core.config import UnknownPartnerError

    try:
        action()
    except (users.UserError, UnknownPartnerError, Forbidden) as exc:
        raise _fail(f"partnerboard users: {exc}") from None


@users_app.command("add")
def users_add(
    email: str,
    role: Annotated[str, typer.Option(help="viewer | editor | admin")] = "viewer",
    partner: PartnerOpt = "both",
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    oidc: Annotated[bool, typer.Option("--oidc", help="No password: signs in through OIDC only")] = False,
    password_stdin: PasswordOpt = False,
    config: ConfigOpt = None,
    database: DbOpt = None,
) -> None:
    """Add a person. Prints a generated password once unless --password-stdin or --oidc."""
    from partnerboard.core.access import cli_user, users

    cfg, store = _users_store(config, database, "add")
    password, generated = (None, False) if oidc else _password(password_stdin)
    with store.engine.begin() as conn:
        _user_change(lambda: users.add(conn, cfg, cli_user(), email, role, name=name, password=password,
                                       partner_id=None if partner == "both" else partner))
    typer.echo(f"added {email.strip().lower()} ({role}, {partner})")
    if generated:
        typer.echo(f"password (shown once): {password}")


@users_app.command("remove")
def users_remove(email: str, config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Remove a person; their sessions end at once (a running board: within 2 s)."""
    from partnerboard.core.access import cli_user, users

    _, store = _users_store(config, database, "remove")
    with store.engine.begin() as conn:
        _user_change(lambda: users.remove(conn, cli_user(), email))
    typer.echo(f"removed {email.strip().lower()}")


@users_app.command("reset")
def users_reset(email: str, password_stdin: PasswordOpt = False, config: ConfigOpt = None,
                database: DbOpt = None) -> None:
    """Set a new password (clears a lockout, ends the person's sessions)."""
    from partnerboard.core.access import cli_user, users

    _, store = _users_store(config, database, "reset")
    password, generated = _password(password_stdin)
    with store.engine.begin() as conn:
        _user_change(lambda: users.reset(conn, cli_user(), email, password))
    typer.echo(f"password of {email.strip().lower()} reset" +
               (f"; new password (shown once): {password}" if generated else ""))


@users_app.command("role")
def users_role(email: str, role: Annotated[str, typer.Option(help="viewer | editor | admin")],
               partner: Annotated[str | None, typer.Option(
                   "--partner", help="Partner id or 'both' (default: unchanged)")] = None,
               config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Change a person's role (and partner)."""
    from partnerboard.core.access import cli_user, users

    cfg, store = _users_store(config, database, "role")
    with store.engine.begin() as conn:
        _user_change(lambda: users.update(
            conn, cfg, cli_user(), email, role=role,
            partner_id=users.KEEP if partner is None else None if partner == "both" else partner))
    typer.echo(f"{email.strip().lower()} is now {role}")


@users_app.command("token")
def users_token(email: str, config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Make a personal API token for scripted exports (replaces the previous one)."""
    from partnerboard.core.access import cli_user, users

    _, store = _users_store(config, database, "token")
    with store.engine.begin() as conn:
        token = None

        def make() -> None:
            nonlocal token
            token = users.new_api_token(conn, cli_user(), email)

        _user_change(make)
    typer.echo(token)


@users_app.command("list")
def users_list(config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Everyone who may sign in, with role, partner, and whether they are locked out."""
    from partnerboard.core.access import cli_user, users

    _, store = _users_store(config, database, "list")
    with store.engine.connect() as conn:
        df = users.listing(conn, reader=cli_user())
    if df.empty:
        typer.echo("no users yet: partnerboard users add EMAIL --role admin")
        return
    for r in df.itertuples():
        typer.echo(f"{r.email}\t{r.role}\t{r.partner_id or 'both'}\t"
                   f"{'password' if r.password else 'oidc only'}\t{'LOCKED' if r.locked else ''}")


def _when(text: str, cfg: Config, flag: str):
    """A date or date-time from the command line; dates are midnight in the partnership's zone."""
    from datetime import date, datetime

    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), cfg.tz)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"{flag} {text!r} is not a date (2026-01-01) or date-time "
                    "(2026-01-01T00:00:00+01:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=cfg.tz)


alerts_app = typer.Typer(no_args_is_help=True, help="Alerts: try a receiver, see what fires and what "
                         "is silenced. Receivers, routes and rules live in [alerts] of the config.")
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("test")
def alerts_test(
    receiver: Annotated[str, typer.Argument(help="Receiver id from [[alerts.receivers]]")],
    config: ConfigOpt = None,
) -> None:
    """Send a test message to RECEIVER now and print its answer. Exit 1 if it refused.

    The message is what a real alert looks like (an endpoint of the first partner, a
    link to the board); it bypasses the outbox, so it is neither recorded nor retried."""
    from partnerboard.notifiers.delivery import board_link, send_test_message

    logs.setup()
    cfg = _load(config)
    try:
        found, answer = send_test_message(cfg, receiver, board_url=board_link(cfg, None))
    except KeyError as exc:
        raise _fail(f"partnerboard alerts test: {exc.args[0]}") from None
    line = f"{found.id} ({found.type}): {answer.describe()}"
    if not answer.accepted:
        raise _fail(line)
    typer.echo(line)


@alerts_app.command("list")
def alerts_list(config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Alerts firing now (muted ones say why) and the silences active or scheduled."""
    from partnerboard.core.alerts import silences, state
    from partnerboard.core.vocabulary import timeutil

    cfg = _load(config)
    store = _open_store(database_url(database), "alerts list")
    now = timeutil.utcnow()
    with store.engine.connect() as conn:
        firing = state.firing(conn)
        quiet = silences.listing(conn, now=now)

    def when(value) -> str:
        return timeutil.from_db(value).astimezone(cfg.tz).strftime("%Y-%m-%d %H:%M %Z")

    typer.echo(f"Firing: {len(firing)}")
    for a in firing:
        partner = a.partner_id or "partnership"
        muted = f"  [muted: {a.muted}]" if a.muted else ""
        typer.echo(f"  {a.severity:<8} {a.rule:<16} {partner:<12} since {when(a.started_at)}  "
                   f"{a.summary}{muted}")
    live = quiet[quiet.state != "ended"] if not quiet.empty else quiet
    typer.echo(f"Silences: {len(live)}")
    for s in live.itertuples():
        typer.echo(f"  {s.id}  {s.state:<9} until {when(s.ends_at)}  rule={s.rule or 'any'} "
                   f"partner={s.partner_id or 'any'} subject={s.subject or 'any'}  by {s.created_by}: "
                   f"{s.reason}")


@app.command()
def reconcile(config: ConfigOpt = None, database: DbOpt = None) -> None:
    """Match the partners' records once (paid orders and captures, refunded returns and
    refunds) and update the break list; print the breaks by class. Exit 1 if a break is open."""
    from partnerboard.core.reconciliation import run as reconciliation
    from partnerboard.core.reconciliation.kinds import KINDS

    cfg = _load(config)
    url = database_url(database)
    _own_database(url, "reconcile")
    store = _open_store(url, "reconcile")
    from partnerboard.core.store import exclusive

    with store.engine.begin() as conn:
        exclusive(conn, "partnerboard:reconciliation")  # never beside a board's own run
        outcome = reconciliation.run(conn, cfg)
    if outcome is None:
        typer.echo("Nothing to reconcile: no partner with orders and one with payments "
                   "(or [reconciliation] enabled = false).")
        return
    if outcome.waiting_for:
        typer.echo("Nothing compared yet: no records collected of "
                   + ", ".join(f"{partner}'s {table}" for partner, table in outcome.waiting_for)
                   + ". Collect them first (partnerboard collect --once).")
        return
    done = outcome.recorded
    typer.echo(f"Reconciled {outcome.start:%Y-%m-%d %H:%M} – {outcome.end:%Y-%m-%d %H:%M} UTC: "
               f"{done.open} breaks ({done.new} new, {done.cleared} resolved by themselves), "
               f"{done.in_transit} in transit")
    counts: dict[str, int] = {}
    for f in outcome.findings.items:
        if not f.in_transit:
            counts[f.kind] = counts.get(f.kind, 0) + 1
    for kind, n in sorted(counts.items()):
        typer.echo(f"  {KINDS[kind].label}: {n}")
    raise typer.Exit(1 if done.open else 0)


@app.command()
def simulate(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the outage schedule")] = 42,
    demo_blips: Annotated[bool, typer.Option(help="Add frequent short outages")] = False,
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 500")] = 0.0,
    timeout_rate: Annotated[float, typer.Option(help="Share of requests that hang")] = 0.0,
    extra_latency_ms: Annotated[float, typer.Option(help="Added to every response")] = 0.0,
    scale: Annotated[float, typer.Option(help="Business-data volume (1.0 = ~300 orders/day)")] = 1.0,
    history_days: Annotated[int, typer.Option(help="Days of business history")] = 180,
    now: Annotated[str | None, typer.Option(help="Freeze the clock at this ISO time")] = None,
    breaks: Annotated[int, typer.Option(
        min=0, max=100, help="Reconciliation breaks of every class to inject (docs/reconciliation.md)")] = 0,
) -> None:
    """Serve the stand-in partner APIs on loopback. Secrets come from the environment."""
    from datetime import datetime

    from partnerboard.simulator.server import serve_forever, tokens_from_env

    tokens = tokens_from_env()
    chaos = {"error_rate": error_rate, "timeout_rate": timeout_rate,
             "extra_latency_ms": extra_latency_ms}
    frozen = datetime.fromisoformat(now) if now else None
    typer.echo(f"Partner simulator: http://{host}:{port}/marketplace and /payments")
    from partnerboard.simulator.breaks import KINDS

    serve_forever(host, port, tokens, seed=seed, demo_blips=demo_blips, chaos=chaos,
                  scale=scale, history_days=history_days, now=frozen,
                  breaks=dict.fromkeys(KINDS, breaks) if breaks else None)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Board port")] = 8501,
    sim_port: Annotated[int, typer.Option(help="Simulator port (as in partners.toml)")] = 8765,
    config: ConfigOpt = None,
    database: DbOpt = None,
) -> None:
    """Start the simulator and the board (with collectors) on the demo config.

    The config is --config, else $PARTNERBOARD_CONFIG, else ./partners.toml, else the demo
    partnership installed with Partnerboard (so a wheel install runs the demo anywhere)."""
    from partnerboard.simulator.server import tokens_from_env

    if config is None and not os.environ.get(CONFIG_ENV) and not config_path().exists():
        config = str(_packaged_demo_config())
    tokens_from_env(generate_missing=True)  # shared with the child through the environment
    # The simulator builds its 180 days of history (~5 s of CPU) while the account is made.
    sim = subprocess.Popen(
        [sys.executable, "-m", "partnerboard.cli", "simulate", "--port", str(sim_port),
         "--demo-blips", "--breaks", "2"],
    )
    try:
        _demo_account(config, database, port)
        _wait_for(f"http://127.0.0.1:{sim_port}/marketplace/health", sim, timeout=90.0)
        typer.echo(f"Probe history for the SLA pages: {DEMO_HISTORY_DAYS} days from the simulator's "
                   "outage schedule, imported in the background (the SLA page says while it is)")
        _serve(config, database, "127.0.0.1", port, True, history_days=DEMO_HISTORY_DAYS)
    finally:
        sim.terminate()
        sim.wait(timeout=10)


DEMO_EMAIL = "demo@partnership.example"
DEMO_HISTORY_DAYS = 90


def _packaged_demo_config() -> Path:
    """The demo partnership shipped inside the package (a copy of the repository's
    partners.toml; a test keeps the two equal)."""
    from importlib.resources import files

    return Path(str(files("partnerboard") / "demo_partners.toml"))


def _demo_account(config: str | None, database: str | None, port: int) -> None:
    """The demo's admin, with a fresh password each start (printed, since only its hash is
    kept), or ``PARTNERBOARD_DEMO_PASSWORD`` when set. Done before `serve` owns the file."""
    import secrets as _secrets

    from partnerboard.core.access import cli_user, users
    from partnerboard.core.store import close_all

    cfg = _load(config)
    if cfg.access.mode != "builtin":
        return
    password = os.environ.get("PARTNERBOARD_DEMO_PASSWORD") or _secrets.token_urlsafe(12)
    store = _open_store(database_url(database), "demo")
    with store.engine.begin() as conn:
        _user_change(lambda: users.add(conn, cfg, cli_user(), DEMO_EMAIL, "admin", name="Demo admin",
                                       password=password) if users.get(conn, DEMO_EMAIL) is None
                     else users.reset(conn, cli_user(), DEMO_EMAIL, password))
    close_all()
    typer.secho(f"\nSign in at http://127.0.0.1:{port} as {DEMO_EMAIL} with password {password}\n"
                "(an admin of both partners; add people with `partnerboard users add` or on the "
                "Users page)\n", fg="green", bold=True)


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _fail(f"the simulator exited with code {proc.returncode}; is the port in use?")
        try:
            httpx.get(url, timeout=1)  # any answer, even a scheduled 503, means it is up
            return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise _fail(f"the simulator did not answer at {url} within {timeout:g} s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
