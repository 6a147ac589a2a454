"""The files a review leaves with: the report CSV, the incidents CSV, the pack (PDF or
HTML) and the audit log, at stable URLs, as their reader may see them.

Every route signs the reader in (``signin.signed_in``: a session or a personal token),
checks the role in the core, and records the export in the audit log in the same
transaction as the read. Packs are made in threads of their own, one per person and
``renders.MAX_RENDERS`` in all (429 beyond), so sign-in and the pages never wait behind
a PDF.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from partnerboard.core import access
from partnerboard.core.access import User, audit
from partnerboard.core.config import Config
from partnerboard.core.reports import csv_export, incident_csv, report
from partnerboard.core.review import pack, pdf, reading, renders
from partnerboard.core.vocabulary import periods
from partnerboard.web import signin


async def report_csv(request: Request) -> Response:
    """``/api/reports/2026-Q3.csv?partner=&sep=;&decimal=,``: the Reports page's CSV."""
    return await _period_csv(request, "report", lambda conn, config, user, period, partner, sep, decimal: (
        report.to_csv(reading.report_for(conn, config, period, partner_id=partner,
                                         viewer_partner=user.partner_id), sep=sep, decimal=decimal),
        report.filename(period, partner)))


async def incidents_csv(request: Request) -> Response:
    """``/api/reports/2026-Q3/incidents.csv?partner=&sep=;&decimal=,``: every incident of
    the period (the pack summarises them), beside the report's CSV; same sign-in, options
    and audit."""
    return await _period_csv(request, "incidents", lambda conn, config, user, period, partner, sep, decimal: (
        incident_csv.to_csv(config, period, reading.incidents_for(conn, config, period).only(partner),
                            sep=sep, decimal=decimal),
        incident_csv.filename(period, partner)))


CsvMaker = Callable[[Connection, Config, User, periods.Period, str | None, str, str], tuple[bytes, str]]


async def _period_csv(request: Request, what: str, make: CsvMaker) -> Response:
    """A CSV of one period (``make``: its bytes and file name), for a signed-in reader who
    may export, with ``partner``, ``sep`` and ``decimal`` checked (400 with the reason) and
    the export audited in the same transaction."""
    who = await signin.signed_in(request)
    if isinstance(who, Response):
        return who
    board, user = who
    partner = request.query_params.get("partner") or None
    sep = request.query_params.get("sep", ",")
    decimal = request.query_params.get("decimal", ".")
    try:
        period = report.check_request(board.config, request.path_params["period"], partner,
                                      sep=sep, decimal=decimal)
    except report.ReportRequestError as exc:
        return PlainTextResponse(str(exc), 400)
    how = "page" if request.query_params.get("via") == "page" else "url"

    def build() -> tuple[bytes, str]:
        with board.store.engine.begin() as conn:
            access.require(user, "export")
            made = make(conn, board.config, user, period, partner, sep, decimal)
            audit.record(conn, user.email, "export", partner=user.partner_id,
                         target=f"{period.label} {what}",
                         detail=f"{how}; partner={partner or 'all'} sep={sep}",
                         ip=signin.client_ip(request))
        return made

    body, name = await asyncio.to_thread(build)
    return csv_response(body, name)


async def report_pack(request: Request) -> Response:
    """``/api/reports/2026-Q3.pdf`` (or ``.html``; ``?appendix=1`` ends it with every
    incident of the period): the review pack, as the reader may see it; same sign-in and
    audit as the CSV. ``429`` with ``Retry-After`` while the person's previous pack, or
    ``renders.MAX_RENDERS`` packs, are being made."""
    who = await signin.signed_in(request)
    if isinstance(who, Response):
        return who
    board, user = who
    kind = request.path_params["kind"]
    if kind not in ("pdf", "html"):
        return PlainTextResponse(f"a report is .csv, .pdf or .html, not .{kind[:10]}", 404)
    try:
        period = report.check_request(board.config, request.path_params["period"])
        appendix = pack.wants_appendix(request.query_params.get("appendix"))
    except report.ReportRequestError as exc:
        return PlainTextResponse(str(exc), 400)
    how = "page" if request.query_params.get("via") == "page" else "url"

    def build() -> bytes:
        with board.store.engine.begin() as conn:
            access.require(user, "export")
            made = pack.build(conn, board.config, period, viewer_partner=user.partner_id, appendix=appendix)
            audit.record(conn, user.email, "export", partner=user.partner_id,
                         target=f"{period.label} review pack ({kind})",
                         detail=how + ("; with the incident appendix" if appendix else ""),
                         ip=signin.client_ip(request))
        document = pack.render(made)
        return pdf.render(document) if kind == "pdf" else document.encode()

    # One pack per person and a few in all, in threads of their own: sign-in and the other
    # routes never wait behind renders (renders.py).
    try:
        slot = renders.claim(user.email)
    except renders.RenderBusy as exc:
        return PlainTextResponse(str(exc), 429, headers={"Retry-After": str(exc.retry_after)})
    making = asyncio.get_running_loop().run_in_executor(renders.EXECUTOR, slot.run, build)
    # A request gone before its render started never runs slot.run: free the slot then.
    making.add_done_callback(lambda f: slot.release() if f.cancelled() else None)
    body = await making
    media = "application/pdf" if kind == "pdf" else "text/html; charset=utf-8"
    return Response(body, media_type=media, headers={
        "Content-Disposition": f'{"attachment" if kind == "pdf" else "inline"}; '
                               f'filename="{pack.filename(period, kind)}"',
        "Cache-Control": "no-store",
        # the HTML pack is a document, not an app: nothing in it may run or load
        "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"})


async def audit_csv(request: Request) -> Response:
    """``/api/audit.csv?action=&actor=``: the audit log as its reader may see it (admins),
    the Data page's download. Served here, not as a Streamlit download, so the file goes
    only to a signed-in admin and the download is audited when it happens."""
    who = await signin.signed_in(request)
    if isinstance(who, Response):
        return who
    board, user = who
    action = request.query_params.get("action") or None
    actor = (request.query_params.get("actor") or "").strip().lower() or None

    def build() -> bytes:
        with board.store.engine.begin() as conn:
            access.require(user, "view_audit")
            log = audit.entries(conn, reader=user, action=action, actor=actor)
            audit.record(conn, user.email, "export", partner=user.partner_id, target="audit log",
                         detail=f"action={action or 'all'} actor={actor or 'all'} rows={len(log)}",
                         ip=signin.client_ip(request))
        return csv_export.write(log, headers={})  # the log's own column names

    try:
        body = await asyncio.to_thread(build)
    except access.Forbidden as exc:
        await signin.refused(request, board, user, str(exc))
        return PlainTextResponse(str(exc), 403)
    except ValueError as exc:  # a filter no entry could match (too long, a NUL): named
        return PlainTextResponse(str(exc), 400)
    return csv_response(body, "audit-log.csv")


def csv_response(body: bytes, name: str) -> Response:
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


ROUTES: list[Any] = [
    Route("/api/reports/{period}.csv", report_csv),
    Route("/api/reports/{period}/incidents.csv", incidents_csv),
    Route("/api/reports/{period}.{kind:str}", report_pack),
    Route("/api/audit.csv", audit_csv),
]
