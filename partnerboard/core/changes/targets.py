"""KPI targets set on the board, and the one rule that merges them with the file's.

Targets start in ``partners.toml`` (``[[targets]]``), but a review often ends with "raise
the conversion target for Q4", and the people who agree on that are editors of the
board, not whoever can edit the file on the server. So targets can also be set on the
board; they live in ``stored_targets`` (one row per partner, KPI and period, ``''`` =
every period) and every change is audited in the same transaction.

**Precedence.** ``effective(conn, config)`` is the single place where the two sources
meet: a copy of the config whose ``targets`` are the file's ``[[targets]]`` plus the
stored ones, where *a board target replaces the file's target with the same (partner,
KPI, period)* — board edits win over the file for the same key. Across different keys
nothing changes: ``kpi_engine.target_for`` still picks the most specific target (exact
period, then the period's year, then every period), whichever source each came from. So
a file target for ``2026-Q4`` still wins over a board target for every period, and a
board target for ``2026-Q4`` wins over both.

**One source of truth.** Nothing else merges targets. Every number is judged with an
effective config: the pages get it from ``partnerboard.dashboard.context.config()`` (cached, keyed
on the config file and ``version`` of this table, so an edit reaches every page and every
cached query within seconds), and ``report.build`` applies ``effective`` itself, so the
Reports page, ``/api/reports/<period>.csv`` and ``partnerboard export`` carry the same
targets as the Board. ``effective`` is idempotent: stored targets are ``StoredTarget``
instances that carry the file targets they replace, so from an already effective config
(as the pages pass) it recovers the file's targets and gives the same result as from
the file config, also after a board target was removed.
"""

from __future__ import annotations

import math
from datetime import datetime

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from partnerboard.core.access import Forbidden, User, audit, require
from partnerboard.core.config import Config, Target, UnknownPartnerError
from partnerboard.core.config.settings import _describe
from partnerboard.core.store import schema, text_input
from partnerboard.core.vocabulary import periods, timeutil
from partnerboard.core.vocabulary.kpis import BY_ID, applies_to

tt = schema.stored_targets
Key = tuple[str, str, str | None]  # (partner, kpi, period or None = every period)
PERIOD_FORMS = ("blank (every period), a year (2026), a quarter (2026-Q3), a month (2026-10) "
                "or a week (2026-W44)")


class TargetError(ValueError):
    """A target that cannot be stored; the message names the field and the fix."""


class StoredTarget(Target):
    """A target set on the board: a ``config.Target`` (so ``target_for`` and everything
    else reads it unchanged) that also says who set it and when."""

    updated_by: str
    updated_at: datetime  # aware UTC
    # The config file's targets for the same key, which this one replaces (set by
    # ``effective``): kept so an effective config still knows the file's targets.
    replaces: tuple[Target, ...] = ()


def key(target: Target) -> Key:
    return (target.partner, target.kpi, target.period)


def _period(period: str | None) -> str | None:
    """The stored form of a period: None for every period (blank input included)."""
    return (period or "").strip() or None


def stored(conn: Connection) -> list[Target]:
    """Every board-set target, as ``StoredTarget``s, in a stable order."""
    rows = conn.execute(sa.select(tt).order_by(tt.c.partner_id, tt.c.kpi, tt.c.period)).mappings()
    return [StoredTarget(partner=r["partner_id"], kpi=r["kpi"], value=r["value"],
                         period=r["period"] or None, amber_within_pct=r["amber_within_pct"],
                         updated_by=r["updated_by"], updated_at=timeutil.from_db(r["updated_at"]))
            for r in rows]


def effective(conn: Connection, config: Config) -> Config:
    """A copy of ``config`` whose targets are the file's plus the board's, a board target
    replacing the file's for the same (partner, KPI, period). Board targets that name a
    partner or KPI the file no longer knows are left out (they could not be shown)."""
    from_file = file_targets(config)
    partners = {p.id for p in config.partners}
    board = [t.model_copy(update={"replaces": tuple(f for f in from_file if key(f) == key(t))})
             for t in stored(conn) if t.kpi in BY_ID and t.partner in partners]
    replaced = {key(t) for t in board}
    return config.model_copy(update={"targets": [*(t for t in from_file if key(t) not in replaced), *board]})


def file_targets(config: Config) -> list[Target]:
    """The config file's targets, also from an effective config (whose board targets
    carry the file targets they replace)."""
    return [*(t for t in config.targets if not isinstance(t, StoredTarget)),
            *(f for t in config.targets if isinstance(t, StoredTarget) for f in t.replaces)]


def version(conn: Connection) -> str:
    """A cheap fingerprint of ``stored_targets`` (rows, newest change, sum of values) that
    changes with every set or remove: the cache key of an effective config."""
    n, newest, total = conn.execute(sa.select(
        sa.func.count(), sa.func.max(tt.c.updated_at),
        sa.func.sum(tt.c.value + tt.c.amber_within_pct))).one()
    return f"{n}@{newest.isoformat() if newest else '-'}@{(total or 0)!r}"


def file_target(config: Config, partner_id: str, kpi: str, period: str | None) -> Target | None:
    """The config file's target for exactly this key (not the most specific one)."""
    wanted = (partner_id, kpi, _period(period))
    return next((t for t in file_targets(config) if key(t) == wanted), None)


def _validated(config: Config, partner_id: str, kpi: str, value: float | None, period: str | None,
               amber_within_pct: float | None) -> Target:
    """The target as ``config.Target`` validates it (the same rules and messages as the
    file), plus what only makes sense for a target that must show up: a configured
    partner, a KPI of that partner's role, a finite value and a real period."""
    try:
        target = Target(partner=partner_id, kpi=kpi, value=value, period=period,
                        amber_within_pct=amber_within_pct)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            if err["type"] == "string_pattern_mismatch" and err["loc"][:1] == ("period",):
                problems.append(f"period must be {PERIOD_FORMS}, got {err['input']!r}")
            else:
                problems.append(_describe(err, {}))  # worded as the config loader words it
        raise TargetError("; ".join(problems)) from None
    try:
        partner = config.partner(partner_id)
    except UnknownPartnerError as exc:
        raise TargetError(str(exc)) from None  # "partner 'x' is not configured (known: ...)"
    if not applies_to(BY_ID[kpi], partner.role):
        raise TargetError(f"kpi {kpi!r} ({BY_ID[kpi].name}) does not apply to {partner.name}, a "
                          f"{partner.role} partner; pick one of its KPIs")
    if not math.isfinite(target.value):
        raise TargetError(f"value must be a finite number, got {target.value!r}")
    if target.period is not None and "-" in target.period:
        try:
            periods.parse(target.period)
        except periods.PeriodError as exc:
            raise TargetError(str(exc)) from None
    return target


def _row(conn: Connection, partner_id: str, kpi: str, period: str | None) -> sa.Row | None:
    return conn.execute(sa.select(tt).where(
        tt.c.partner_id == partner_id, tt.c.kpi == kpi, tt.c.period == (period or ""))).first()


def _describe_key(partner_id: str, kpi: str, period: str | None) -> str:
    return f"{partner_id} {kpi} {period or 'every period'}"


def _may_edit(actor: User | None, partner_id: str) -> None:
    """Editors change targets; one who works for a partner changes only that partner's,
    whatever their role (a target is a commitment the other company signs off too).
    Editors and admins of both partners change any."""
    require(actor, "edit_targets")
    assert actor is not None
    if actor.partner_id not in (None, partner_id):
        raise Forbidden(f"{actor.email} works for {actor.partner_id}; targets of {partner_id} are "
                        f"set by its own editors or a person of both partners")


def set_target(conn: Connection, config: Config, actor: User | None, partner_id: str, kpi: str,
               value: float | None, period: str | None = None, amber_within_pct: float | None = 5.0,
               ip: str | None = None) -> Target:
    """Set (insert or replace) the board's target for a partner, KPI and period as
    ``actor`` (editors and admins) and audit it as ``target.set`` with the old and new
    value, in the caller's transaction. ``period`` blank or None: every period. Setting
    the value a key already has changes nothing and writes no audit entry."""
    require(actor, "edit_targets")
    assert actor is not None
    target = _validated(config, partner_id, kpi, value, _period(period), amber_within_pct)
    _may_edit(actor, partner_id)  # after validation: an unknown partner is named as such
    old = _row(conn, partner_id, kpi, target.period)
    if old is not None and (old.value, old.amber_within_pct) == (target.value, target.amber_within_pct):
        return stored_one(conn, partner_id, kpi, target.period) or target
    now = timeutil.utcnow()
    values = {"value": target.value, "amber_within_pct": target.amber_within_pct,
              "updated_by": actor.email[:320], "updated_at": timeutil.to_db(now)}
    if old is None:
        conn.execute(tt.insert().values(partner_id=partner_id, kpi=kpi, period=target.period or "", **values))
        was_file = file_target(config, partner_id, kpi, target.period)
        was = f"{was_file.value:g} (config file)" if was_file else "none"
    else:
        conn.execute(tt.update().where(tt.c.partner_id == partner_id, tt.c.kpi == kpi,
                                        tt.c.period == (target.period or "")).values(**values))
        was = f"{old.value:g} (board, amber {old.amber_within_pct:g} %)"
    where = _describe_key(partner_id, kpi, target.period)
    audit.record(conn, actor.email, "target.set", partner=audit.SHARED, target=where,
                 detail=f"{where}: {was} → {target.value:g} (amber {target.amber_within_pct:g} %)", ip=ip)
    return StoredTarget(**target.model_dump(), updated_by=actor.email, updated_at=now)


def stored_one(conn: Connection, partner_id: str, kpi: str, period: str | None = None) -> Target | None:
    """The board's target for exactly this key, if one is set."""
    period = _period(period)
    return next((t for t in stored(conn) if key(t) == (partner_id, kpi, period)), None)


def remove_target(conn: Connection, actor: User | None, partner_id: str, kpi: str,
                  period: str | None = None, ip: str | None = None) -> bool:
    """Remove the board's target for a key as ``actor`` (editors and admins); audited as
    ``target.remove``. Returns False when the board has no target for the key: a target
    from the config file is not the board's to remove (edit ``partners.toml``); once
    the board's is gone, the file's target for the same key applies again."""
    _may_edit(actor, partner_id)
    assert actor is not None
    for value, name in ((partner_id, "partner"), (kpi, "kpi"), (period or "", "period")):
        text_input.lookup(value, name, error=TargetError)
    period = _period(period)
    old = _row(conn, partner_id, kpi, period)
    if old is None:
        return False
    conn.execute(tt.delete().where(tt.c.partner_id == partner_id, tt.c.kpi == kpi,
                                    tt.c.period == (period or "")))
    where = _describe_key(partner_id, kpi, period)
    audit.record(conn, actor.email, "target.remove", partner=audit.SHARED, target=where,
                 detail=f"{where}: {old.value:g} (amber {old.amber_within_pct:g} %) → removed", ip=ip)
    return True
