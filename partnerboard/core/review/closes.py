"""Approving, withdrawing and reading the closes of a period.

A close is one version of a period's frozen numbers. ``approve`` by an editor (or admin)
of a partner either starts a draft (freezing the report now) or adds that partner's
approval to the open draft; when every partner of the config has approved, the draft is
signed. ``withdraw`` takes a partner's approval back while the draft is unsigned (a
draft nobody approves any more is withdrawn). Once signed, a version never changes;
``approve(new_version=True)`` starts the next version's draft, whose numbers are frozen
again at that moment. A person of both partners represents neither side, so only people
of one partner approve.

Two people may press their buttons at the same moment on two board replicas: every
sign-off change of a period first takes that period's lock (``store.exclusive``, across
processes on PostgreSQL; DuckDB's one process writes through ``write_serially``), then
reads where the period stands, so the second waits for the first and acts on what the
first left. The page says what it showed (``expect_draft``): a person who pressed
*Countersign v1* is told that v1 was withdrawn meanwhile, and one who pressed *Close* that
someone just closed it, instead of signing or freezing something they never saw. The
status updates are conditional on the status read (``WHERE status = 'draft'``), so even
a writer that skipped the lock could not sign a withdrawn draft or withdraw a signed one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require
from partnerboard.core.config import Config
from partnerboard.core.metrics import incidents, kpi_engine, merchant_funnel
from partnerboard.core.reconciliation import summary as recon_summary
from partnerboard.core.reconciliation.matching import Sides
from partnerboard.core.reports import report
from partnerboard.core.store import exclusive, schema
from partnerboard.core.vocabulary import periods, timeutil
from partnerboard.core.vocabulary.periods import Period

pc, pa = schema.period_closes, schema.period_approvals
CLOSABLE = ("month", "quarter")
TREND_PERIODS = 6
ANY: Literal["any"] = "any"  # expect_draft: whatever the period's state (scripts, the bench)


class SignoffError(ValueError):
    """A close that cannot be made; the message names the reason and the fix."""


@dataclass(frozen=True)
class Approval:
    partner_id: str
    approved_by: str
    approved_at: datetime


@dataclass(frozen=True)
class Close:
    id: str
    period: str
    version: int
    status: str  # draft | signed | withdrawn
    as_of: datetime
    created_by: str
    created_at: datetime
    signed_at: datetime | None
    approvals: tuple[Approval, ...]

    def describe(self, config: Config) -> str:
        """"signed v2 by A (Marketplace, 2026-10-03) and B (PayGate, 2026-10-04)" or
        "draft v1, approved by A (Marketplace); waiting for PayGate"."""
        names = {p.id: p.name for p in config.partners}
        who = " and ".join(f"{a.approved_by} ({names.get(a.partner_id, a.partner_id)}, "
                           f"{a.approved_at.astimezone(config.tz):%Y-%m-%d})" for a in self.approvals)
        if self.status == "signed":
            return f"signed v{self.version} by {who}"
        waiting = [names[p.id] for p in config.partners if p.id not in {a.partner_id for a in self.approvals}]
        head = f"{self.status} v{self.version}" + (f", approved by {who}" if who else "")
        return head + (f"; waiting for {', '.join(waiting)}" if waiting and self.status == "draft" else "")


def _close(conn: Connection, row: Any) -> Close:
    approvals = tuple(Approval(a.partner_id, a.approved_by, timeutil.from_db(a.approved_at))
                      for a in conn.execute(sa.select(pa).where(pa.c.close_id == row.id)
                                            .order_by(pa.c.approved_at)).all())
    return Close(row.id, row.period, row.version, row.status, timeutil.from_db(row.as_of), row.created_by,
                 timeutil.from_db(row.created_at), timeutil.from_db(row.signed_at) if row.signed_at else None,
                 approvals)


def versions(conn: Connection, label: str) -> list[Close]:
    """Every close of a period, newest version first."""
    rows = conn.execute(sa.select(pc).where(pc.c.period == label).order_by(pc.c.version.desc())).all()
    return [_close(conn, r) for r in rows]


def latest_signed(conn: Connection, label: str) -> Close | None:
    row = conn.execute(sa.select(pc).where(pc.c.period == label, pc.c.status == "signed")
                       .order_by(pc.c.version.desc()).limit(1)).first()
    return _close(conn, row) if row is not None else None


def open_draft(conn: Connection, label: str) -> Close | None:
    row = conn.execute(sa.select(pc).where(pc.c.period == label, pc.c.status == "draft")).first()
    return _close(conn, row) if row is not None else None


def snapshot(conn: Connection, close_id: str) -> dict[str, Any]:
    """The frozen numbers: ``report`` (the report's rows), ``trend`` (key KPIs), ``funnel``,
    ``incidents`` (``metrics.incidents.PeriodIncidents``) and ``reconciliation``
    (``reconciliation.summary.Reconciled``); closes made before a part existed lack it."""
    text = conn.execute(sa.select(pc.c.snapshot).where(pc.c.id == close_id)).scalar_one()
    return json.loads(text)


def signed_periods(conn: Connection) -> list[str]:
    return list(conn.execute(sa.select(pc.c.period).where(pc.c.status == "signed").distinct()).scalars())


def _closable(config: Config, label: str, now: datetime) -> Period:
    try:
        period = periods.parse(label)
    except periods.PeriodError as exc:
        raise SignoffError(str(exc)) from None
    if period.kind not in CLOSABLE:
        raise SignoffError(f"{label} is a {period.kind}; a review closes a month or a quarter "
                           "(e.g. 2026-10 or 2026-Q3)")
    end = period.bounds(config.tz)[1]
    if end > now:
        raise SignoffError(f"{label} has not ended yet (it ends {end.astimezone(config.tz):%Y-%m-%d %H:%M}); "
                           "close it after its last day")
    return period


def _freeze(conn: Connection, config: Config, period: Period, now: datetime) -> dict[str, Any]:
    """The report as both companies sign it: shared annotations only (internal notes are
    no part of a joint signature; each side still sees its own beside the snapshot)."""
    frame = report.build(conn, config, period, now=now, governance=False)  # decisions stay live
    frame = frame[~((frame.section == "annotation") & (frame.status == "internal"))]
    trend = live_trend(conn, config, period)
    start, end = period.bounds(config.tz)
    return {"as_of": now.isoformat(), "period": period.label,
            "report": json.loads(frame.to_json(orient="records", date_format="iso")), "trend": trend,
            "funnel": _funnels(conn, config, period, now),
            # The incidents as the pack summarises them (report times, probe coverage):
            # the report's incident rows carry neither (their columns are the CSV's).
            "incidents": incidents.load(conn, start, end, now).to_json(),
            # The pack's Reconciliation section (by class and age) as the break list stood.
            "reconciliation": _reconciliation(conn, config, start, end, now)}


def _reconciliation(conn: Connection, config: Config, start: datetime, end: datetime,
                    now: datetime) -> dict[str, Any] | None:
    sides = Sides.of(config)
    return None if sides is None else recon_summary.reconciled(conn, sides, start, end, now).to_json()


def funnel_months(period: Period) -> tuple[Period, Period]:
    """The 12 application-month cohorts a funnel page shows: ending with the period's last month."""
    last = periods.month_of(period.end - timedelta(days=1))
    return periods.trailing(last, 12)[0], last


def _funnels(conn: Connection, config: Config, period: Period, now: datetime) -> dict[str, Any]:
    """Per marketplace partner, the period's application cohort by stage and the cohorts
    table, as of the close: they are counted "reached by a time", so they are frozen with
    that time."""
    first, last = funnel_months(period)
    out = {}
    for partner in config.partners:
        if partner.role != "marketplace":
            continue
        stages = merchant_funnel.funnel(conn, partner.id, period, config.tz, now)
        cohorts = merchant_funnel.cohorts(conn, partner.id, first, last, config.tz, now)
        out[partner.id] = {"as_of": now.isoformat(),
                           "stages": json.loads(stages.to_json(orient="records", date_format="iso")),
                           "cohorts": json.loads(cohorts.to_json(orient="records", date_format="iso"))}
    return out


def live_trend(conn: Connection, config: Config, period: Period, n: int = TREND_PERIODS) -> list[dict]:
    """Today's value of every KPI for the ``n`` periods ending with ``period``, oldest
    first: the pack's trend charts (frozen into a snapshot at close)."""
    series = periods.trailing(period, n)
    found = kpi_engine.compute_many(conn, config.partners, series, config.tz, reconciled=Sides.of(config))
    order = [p.label for p in series]
    return [{"partner_id": pid, "period": label, "kpi": kpi, "value": value}
            for (pid, label), values in sorted(found.items(), key=lambda kv: order.index(kv[0][1]))
            for kpi, value in values.items()]


def _one_at_a_time(conn: Connection, label: str) -> None:
    """Hold the period's sign-off lock until the caller's transaction ends."""
    exclusive(conn, f"period-signoff:{label}")


def _check_expected(conn: Connection, config: Config, label: str, draft: Close | None,
                    expect_draft: int | None | Literal["any"]) -> None:
    """Refuse when the period no longer stands as the person's page showed it:
    ``expect_draft`` is the open draft's version they countersign, None when they saw no
    open draft (*Close and approve*, *Close again*), ``ANY`` when nothing is checked."""
    if expect_draft == ANY or expect_draft == (draft.version if draft else None):
        return
    if draft is not None and expect_draft is None:
        raise SignoffError(f"{label} v{draft.version} was just closed by {draft.created_by} (numbers as of "
                           f"{draft.as_of.astimezone(config.tz):%Y-%m-%d %H:%M:%S}); reload the page to "
                           "see them, then countersign")
    seen = next((c for c in versions(conn, label) if c.version == expect_draft), None)
    if seen is not None and seen.status == "signed":
        raise SignoffError(f"{label} is now {seen.describe(config)}: it was signed since your page "
                           "showed it; reload the page")
    if seen is not None and seen.status == "withdrawn":
        raise SignoffError(f"{label} v{seen.version} was withdrawn since your page showed it (its last "
                           "approval was taken back); reload the page, then close it again")
    now_open = f"v{draft.version} is the open draft" if draft else "it has no open draft"
    raise SignoffError(f"{label} changed since your page showed it ({now_open}); reload the page")


def _set_status(conn: Connection, close_id: str, label: str, version: int, **values: Any) -> None:
    """Move a draft on (signed, withdrawn) only if it is still a draft: the check of the
    state read, in the update itself."""
    done = conn.execute(pc.update().where(pc.c.id == close_id, pc.c.status == "draft").values(**values))
    if done.rowcount != 1:
        raise SignoffError(f"{label} v{version} changed while this was being saved; reload the page")


def approve(conn: Connection, config: Config, actor: User | None, label: str, *,
            now: datetime | None = None, new_version: bool = False, ip: str | None = None,
            expect_draft: int | None | Literal["any"] = ANY) -> Close:
    """Approve ``label`` for the actor's partner: start a draft (freezing the numbers
    now) or add to the open one; sign it when every partner has approved.
    ``expect_draft``: the open draft the person's page showed (see ``_check_expected``)."""
    require(actor, "close_period")
    assert actor is not None
    now = now or timeutil.utcnow()
    if actor.partner_id is None:
        raise SignoffError(f"{actor.email} works for both partners, so they represent neither side; "
                           "an editor of each partner approves the period")
    period = _closable(config, label, now)
    label = period.label
    _one_at_a_time(conn, label)
    draft = open_draft(conn, label)
    _check_expected(conn, config, label, draft, expect_draft)
    if draft is None:
        signed = latest_signed(conn, label)
        if signed is not None and not new_version:
            raise SignoffError(f"{label} is already {signed.describe(config)}; close it again as "
                               f"version {signed.version + 1} to re-sign today's numbers")
        version = (conn.execute(sa.select(sa.func.max(pc.c.version)).where(pc.c.period == label)).scalar()
                   or 0) + 1
        close_id = str(uuid.uuid4())
        frozen = _freeze(conn, config, period, now)
        conn.execute(pc.insert().values(
            id=close_id, period=label, version=version, status="draft", as_of=timeutil.to_db(now),
            snapshot=json.dumps(frozen, default=str), created_by=actor.email, created_at=timeutil.to_db(now)))
        audit.record(conn, actor.email, "period.close", partner=audit.SHARED, target=f"{label} v{version}",
                     detail=f"numbers frozen as of {now.isoformat()}", ip=ip)
    else:
        close_id, version = draft.id, draft.version
        if any(a.partner_id == actor.partner_id for a in draft.approvals):
            raise SignoffError(f"{label} v{version} is already approved for {actor.partner_id}; the other "
                               "partner's editor countersigns it")
    conn.execute(pa.insert().values(close_id=close_id, partner_id=actor.partner_id, approved_by=actor.email,
                                    approved_at=timeutil.to_db(now)))
    audit.record(conn, actor.email, "period.approve", partner=audit.SHARED, target=f"{label} v{version}",
                 detail=f"approved for {actor.partner_id}", ip=ip)
    approved = set(conn.execute(sa.select(pa.c.partner_id).where(pa.c.close_id == close_id)).scalars())
    if approved >= {p.id for p in config.partners}:
        _set_status(conn, close_id, label, version, status="signed", signed_at=timeutil.to_db(now))
        audit.record(conn, actor.email, "period.sign", partner=audit.SHARED, target=f"{label} v{version}",
                     detail="approved by every partner", ip=ip)
    return _close(conn, conn.execute(sa.select(pc).where(pc.c.id == close_id)).one())


def withdraw(conn: Connection, config: Config, actor: User | None, label: str, *,
             now: datetime | None = None, ip: str | None = None) -> Close:
    """Take back the actor's partner's approval of the unsigned draft of ``label``."""
    require(actor, "close_period")
    assert actor is not None
    try:
        label = periods.parse(label).label  # the lock's name is the label approve uses
    except periods.PeriodError as exc:
        raise SignoffError(str(exc)) from None
    _one_at_a_time(conn, label)
    draft = open_draft(conn, label)
    if draft is None:
        signed = latest_signed(conn, label)
        if signed is not None:
            raise SignoffError(f"{label} is {signed.describe(config)}: a signed version stays as signed; "
                               f"close it again as version {signed.version + 1} to correct it")
        raise SignoffError(f"{label} has no draft to withdraw from")
    mine = [a for a in draft.approvals if a.partner_id == actor.partner_id]
    if not mine:
        raise SignoffError(f"{label} v{draft.version} has no approval of "
                           f"{actor.partner_id or 'both partners'} to withdraw")
    conn.execute(pa.delete().where(pa.c.close_id == draft.id, pa.c.partner_id == actor.partner_id))
    left = conn.execute(sa.select(sa.func.count()).select_from(pa).where(pa.c.close_id == draft.id)).scalar()
    if not left:
        _set_status(conn, draft.id, label, draft.version, status="withdrawn")
    audit.record(conn, actor.email, "period.withdraw", partner=audit.SHARED,
                 target=f"{label} v{draft.version}", detail=f"approval of {actor.partner_id} withdrawn",
                 ip=ip)
    return _close(conn, conn.execute(sa.select(pc).where(pc.c.id == draft.id)).one())


def signed_frame(conn: Connection, close: Close) -> pd.DataFrame:
    """The signed report rows as a frame with the report's columns."""
    rows = snapshot(conn, close.id)["report"]
    return pd.DataFrame(rows, columns=list(report.COLUMNS))
