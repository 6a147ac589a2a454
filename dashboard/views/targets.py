"""Targets: what each KPI is judged against, and (for editors and admins) changing them.

Targets come from ``partners.toml`` and from the board (``partnerboard.core.changes.targets``);
a board target replaces the file's for the same partner, KPI and period. The table shows
the effective targets, the very ones the Board, the trend charts and the report use.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from partnerboard.dashboard import context, gate
from partnerboard.dashboard.format import kpi_value, local_time
from partnerboard.dashboard.literal import failure

from partnerboard.core.access import Forbidden, article
from partnerboard.core.changes import targets
from partnerboard.core.vocabulary.kpis import BY_ID, VALUE_KPIS, applies_to

_FLASH = "_targets_flash"  # a success message that survives the rerun after a change

store = context.store()
user = gate.current()
cfg = context.config()
names = {p.id: p.name for p in cfg.partners}

st.title("Targets")
st.caption("Each KPI is judged against the most specific target: one for exactly the period shown, "
           "then one for its year, then one for every period. Targets come from the config file "
           "(partners.toml) or are set here; a target set here replaces the file's for the same "
           "partner, KPI and period. The Board, the trend charts and the reports use these targets.")
if flash := st.session_state.pop(_FLASH, None):
    st.success(flash)


def _source(t: targets.Target) -> str:
    if not isinstance(t, targets.StoredTarget):
        return "config file"
    over = f" (replaces the file's {kpi_value(t.replaces[0].value, BY_ID[t.kpi].unit)})" if t.replaces else ""
    return f"board · {t.updated_by} · {local_time(t.updated_at, cfg.tz)}{over}"


partner_order = {pid: i for i, pid in enumerate(names)}
kpi_order = {k.id: i for i, k in enumerate(VALUE_KPIS)}
shown = sorted(cfg.targets, key=lambda t: (partner_order.get(t.partner, len(names)),
                                           kpi_order.get(t.kpi, len(kpi_order)), t.period or ""))
st.subheader("Targets in effect")
if not shown:
    st.info("No targets yet: add `[[targets]]` to partners.toml, or set one below "
            "(editors and admins).")
else:
    st.dataframe(pd.DataFrame([{
        "Partner": names.get(t.partner, t.partner),
        "KPI": BY_ID[t.kpi].name,
        "Period": t.period or "every period",
        "Target": kpi_value(t.value, BY_ID[t.kpi].unit),
        "Amber band": f"within {t.amber_within_pct:g} %",
        "Source": _source(t),
    } for t in shown]), hide_index=True, width="stretch")

if not user.can("edit_targets"):
    st.caption(f"You are {article(user.role)} {user.role}: you can read the targets; "
               "editors and admins change them.")
    st.stop()

st.subheader("Set a target")
# An editor who works for one partner sets that partner's targets (the core insists too).
ids = list(names) if user.partner_id is None else [user.partner_id]
partner_id = st.selectbox("Partner", ids, format_func=names.get, key="target_partner",
                          index=ids.index(user.partner_id) if user.partner_id in ids else 0)
partner = cfg.partner(partner_id)
kpis = {k.id: f"{k.name} ({k.unit}, {k.direction} is better)" for k in VALUE_KPIS
        if applies_to(k, partner.role)}
with st.form("set_target"):
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    kpi = c1.selectbox("KPI", list(kpis), format_func=kpis.get, key="target_kpi")
    value = c2.number_input("Target", value=None, step=0.01, key="target_value",
                            placeholder="in the KPI's unit")
    period = c3.text_input("Period", key="target_period", placeholder="blank: every period",
                           help="Blank for every period, or a year (2026), a quarter (2026-Q3) or a "
                                "month (2026-10).")
    amber = c4.number_input("Amber within (%)", min_value=0.0, max_value=100.0, value=5.0, step=0.5,
                            key="target_amber", help="How far (in % of the target) a value may miss "
                                                     "it and still be amber rather than red.")
    if st.form_submit_button("Set target", key="target_set", type="primary"):
        try:
            with store.engine.begin() as conn:
                saved = targets.set_target(conn, cfg, user, partner_id, kpi, value, period, amber)
        except (targets.TargetError, Forbidden) as exc:
            st.error(f"Not set: {failure(exc)}")
        except Exception as exc:
            st.error(f"Not set: {failure(exc)}")
        else:
            context.targets_changed()
            st.session_state[_FLASH] = (
                f"Target set: {partner.name} · {BY_ID[kpi].name} · {saved.period or 'every period'} "
                f"→ {kpi_value(saved.value, BY_ID[kpi].unit)} (amber within {saved.amber_within_pct:g} %).")
            st.rerun()

st.subheader("Remove a board target")
board = {f"{t.partner}|{t.kpi}|{t.period or ''}": t for t in shown if isinstance(t, targets.StoredTarget)
         and user.partner_id in (None, t.partner)}  # a person of one partner: its targets only
if not board:
    st.caption("No targets have been set on the board.")
else:
    def _label(k: str) -> str:
        if not k:
            return "—"
        t = board[k]
        return (f"{names.get(t.partner, t.partner)} · {BY_ID[t.kpi].name} · {t.period or 'every period'}"
                f" · {kpi_value(t.value, BY_ID[t.kpi].unit)}")

    gone = st.selectbox("Board target", ["", *board], format_func=_label, key="target_remove")
    if gone and st.button("Remove", key="target_remove_button"):
        t = board[gone]
        try:
            with store.engine.begin() as conn:
                removed = targets.remove_target(conn, user, t.partner, t.kpi, t.period)
        except Forbidden as exc:
            st.error(f"Not removed: {failure(exc)}")
        except Exception as exc:
            st.error(f"Not removed: {failure(exc)}")
        else:
            context.targets_changed()
            st.session_state[_FLASH] = (f"Removed: {_label(gone)}." if removed
                                        else f"{_label(gone)} was already removed.")
            st.rerun()
st.caption("Targets from the config file cannot be removed on the board: change `[[targets]]` in "
           "partners.toml, or set a board target for the same partner, KPI and period to replace one.")
