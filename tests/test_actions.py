"""Decisions and action items: visibility of internal items for every role of both
partners (core, page, CSV, PDF), carry-over of open items across two periods, who may
change what."""

from __future__ import annotations

import io
import shutil
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from partnerboard.core.access import Forbidden, User, audit
from partnerboard.core.changes import actions
from partnerboard.core.config import load_config, parse_config
from partnerboard.core.reports import report
from partnerboard.core.review import pack, pdf, reading
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import ONCE_PAGES, config_dict, open_page
from tests.forged import forge

M_EDITOR = User("editor@marketplace.example", "editor", "marketplace")
P_EDITOR = User("editor@paygate.example", "editor", "payments")
ROLES = [(role, partner) for partner in ("marketplace", "payments") for role in ("viewer", "editor", "admin")]


def _seed(conn, cfg) -> None:
    actions.add_decision(conn, cfg, actions.NewDecision("2026-10", date(2026, 10, 20),
                                                        "move to payments API v2"),
                         actor=M_EDITOR)
    actions.add_decision(conn, cfg, actions.NewDecision("2026-10", date(2026, 10, 20),
                                                        "M-INTERNAL renegotiate fee", visibility="internal"),
                         actor=M_EDITOR)
    actions.add_action(conn, cfg, actions.NewAction("2026-10", "shared retry payouts", "Ana", "payments",
                                                    date(2026, 11, 30)), actor=P_EDITOR)
    actions.add_action(conn, cfg, actions.NewAction("2026-10", "P-INTERNAL audit fraud rules", "Piotr",
                                                    "payments", date(2026, 11, 30), visibility="internal"),
                       actor=P_EDITOR)
    actions.add_action(conn, cfg, actions.NewAction("2026-10", "M-INTERNAL pressure PayGate", "Marta",
                                                    "marketplace", date(2026, 11, 30), visibility="internal"),
                       actor=M_EDITOR)


def _visible_words(text: str) -> set[str]:
    return {w for w in ("M-INTERNAL", "P-INTERNAL", "shared retry payouts", "move to payments API v2")
            if w in text}


def _expected(partner: str) -> set[str]:
    own = "M-INTERNAL" if partner == "marketplace" else "P-INTERNAL"
    return {own, "shared retry payouts", "move to payments API v2"}


def test_internal_items_stay_with_their_partner_in_core_csv_and_pdf(store) -> None:
    """For every role, admins included: the core, the CSV and the pack take the reader's
    partner and nothing else of the reader (``viewer_partner``), so each partner's view is
    read once (it was read again, identically, for each of its three roles). The page test
    below runs each role, where roles differ (who may add)."""
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    with store.engine.begin() as conn:
        _seed(conn, cfg)
    have_pdf = shutil.which("pdftotext") is not None
    for partner in sorted({p for _, p in ROLES}):
        with store.engine.connect() as conn:
            core = " ".join([*actions.decisions(conn, "2026-10", viewer_partner=partner).text,
                             *actions.items(conn, "2026-10", viewer_partner=partner).title])
            frame = reading.report_for(conn, cfg, parse("2026-10"), viewer_partner=partner)
            document = pack.render(pack.build(conn, cfg, parse("2026-10"), viewer_partner=partner))
        csv = pd.read_csv(io.BytesIO(report.to_csv(frame)), encoding="utf-8-sig")
        in_csv = " ".join(csv[csv.section.isin(["decision", "action"])].name)
        if have_pdf:
            from tests.test_review_pack import pdf_text

            in_pdf = pdf_text(pdf.render(document))
        assert _visible_words(core) == _expected(partner), partner
        assert _visible_words(in_csv) == _expected(partner), partner
        assert _visible_words(document) == _expected(partner), partner
        if have_pdf:
            assert _visible_words(in_pdf) == _expected(partner), partner


@pytest.mark.parametrize(("role", "partner"), ROLES)
@ONCE_PAGES
def test_the_actions_page_shows_each_role_only_its_sides_internal_items(page_env, store, role,
                                                                        partner) -> None:
    cfg = load_config(page_env)
    with store.engine.begin() as conn:
        _seed(conn, cfg)
    at = open_page("views/actions.py", period="2026-10", title="Actions", user=f"{role}@{partner}.example",
                   role=role, partner_id=partner)
    shown = " ".join(str(v) for d in at.dataframe for v in d.value.to_numpy().ravel())
    assert _visible_words(shown) == _expected(partner)
    forms = [b.label for b in at.button]
    assert ("Add action item" in forms) == (role != "viewer")


def test_open_items_carry_over_across_two_periods(store) -> None:
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    with store.engine.begin() as conn:
        late = actions.add_action(conn, cfg, actions.NewAction("2026-09", "late: fix webhook retries", "Ana",
                                                               "payments", date(2026, 10, 10)),
                                  actor=P_EDITOR)
        later = actions.add_action(conn, cfg, actions.NewAction("2026-09", "later: new onboarding flow",
                                                                "Marta", "marketplace", date(2027, 1, 31)),
                                   actor=M_EDITOR)
        done = actions.add_action(conn, cfg, actions.NewAction("2026-09", "done in October", "Marta",
                                                               "marketplace", date(2026, 10, 31)),
                                  actor=M_EDITOR)
        dropped = actions.add_action(conn, cfg, actions.NewAction("2026-09", "dropped in September", "Ana",
                                                                  "payments", date(2026, 9, 30)),
                                     actor=P_EDITOR)
        actions.set_status(conn, done, "done", actor=M_EDITOR, notes="shipped 2026-10-14",
                           now=datetime(2026, 10, 14, 10, tzinfo=UTC))
        actions.set_status(conn, dropped, "dropped", actor=P_EDITOR, now=datetime(2026, 9, 25, tzinfo=UTC))
        october = actions.carried_over(conn, cfg, "2026-10", viewer_partner=None, today=date(2026, 11, 5))
        nov_item = actions.add_action(conn, cfg, actions.NewAction("2026-10", "from October: SLA credit memo",
                                                                   "Piotr", "payments", date(2026, 11, 20)),
                                      actor=P_EDITOR)
        november = actions.carried_over(conn, cfg, "2026-11", viewer_partner=None, today=date(2026, 12, 4))
        rows = report.build(conn, cfg, parse("2026-11"))
        with pytest.raises(Forbidden):  # the marketplace editor cannot close PayGate's item
            actions.set_status(conn, late, "done", actor=M_EDITOR)
        entries = audit.entries(conn, reader=User("a@x", "admin", None)).action.tolist()
    assert [(r.id, r.carry) for r in october.itertuples()] == [(late, "open"), (later, "open"),
                                                               (done, "closed")]
    assert october.set_index("id").loc[late, "overdue_days"] == 26  # due 10 October, on 5 November
    assert october.set_index("id").loc[later, "overdue_days"] == 0
    assert october.set_index("id").loc[done, "notes"] == "shipped 2026-10-14"
    # November: September's still-open items and October's new one, overdue first; the
    # item done in October belongs to October's list, not November's
    assert [(r.id, r.carry) for r in november.itertuples()] == [(late, "open"), (nov_item, "open"),
                                                                (later, "open")]
    assert dropped not in set(november.id)
    acts = rows[rows.section == "action"]
    assert set(acts.item) == {late, later, nov_item}
    assert "from 2026-09, open" in acts[acts.item == late].detail.iloc[0]
    assert entries.count("action.add") == 5 and entries.count("action.done") == 1


def test_bad_items_are_refused_with_the_field_and_the_fix(store) -> None:
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    both = User("e@partnership.example", "editor", None)
    viewer = User("v@paygate.example", "viewer", "payments")
    with store.engine.begin() as conn:
        with pytest.raises(actions.ActionError, match="title is empty"):
            actions.add_action(conn, cfg, actions.NewAction("2026-10", " ", "Ana", None, date(2026, 11, 1)),
                               actor=P_EDITOR)
        with pytest.raises(actions.ActionError, match="a review is a month or a quarter"):
            actions.add_action(conn, cfg, actions.NewAction("2026-W40", "x", "Ana", None, date(2026, 11, 1)),
                               actor=P_EDITOR)
        with pytest.raises(actions.ActionError, match="works for both partners"):
            actions.add_decision(conn, cfg, actions.NewDecision("2026-10", date(2026, 10, 1), "x",
                                                                visibility="internal"), actor=both)
        with pytest.raises(actions.ActionError, match="its owner cannot be the other partner"):
            actions.add_action(conn, cfg, actions.NewAction("2026-10", "x", "Ana", "marketplace",
                                                            date(2026, 11, 1), visibility="internal"),
                               actor=P_EDITOR)
        with pytest.raises(actions.ActionError, match="incident 'nope' is not in the store"):
            actions.add_action(conn, cfg, actions.NewAction("2026-10", "x", "Ana", None, date(2026, 11, 1),
                                                            incident_id="nope"), actor=P_EDITOR)
        with pytest.raises(Forbidden):
            actions.add_decision(conn, cfg, actions.NewDecision("2026-10", date(2026, 10, 1), "x"),
                                 actor=viewer)
        internal = actions.add_action(conn, cfg, actions.NewAction("2026-10", "x", "Ana", "payments",
                                                                   date(2026, 11, 1), visibility="internal"),
                                      actor=P_EDITOR)
        # the other partner cannot even find it, let alone change it
        assert actions.set_status(conn, internal, "done", actor=M_EDITOR) is False


def test_a_change_to_an_internal_item_is_filed_under_the_items_partner(store) -> None:
    """Issue 35 (6): a person of both partners changing a payments-internal item wrote the
    entry under their own partner (both: shared), so a marketplace admin read that the item
    exists, its id, when it changed and by whom. The entry belongs to the item's partner."""
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    ops = User("ops@partnership.example", "editor", None)
    market_admin = User("ma@marketplace.example", "admin", "marketplace")
    pay_admin = User("pa@paygate.example", "admin", "payments")
    with store.engine.begin() as conn:
        item = actions.add_action(conn, cfg, actions.NewAction(
            "2026-10", "P-INTERNAL audit fraud rules", "Piotr", "payments", date(2026, 11, 30),
            visibility="internal"), actor=P_EDITOR)
        assert actions.set_status(conn, item, "done", actor=ops, notes="rules reviewed")
        assert actions.set_status(conn, item, "open", actor=ops)
        theirs = audit.entries(conn, reader=market_admin)
        own = audit.entries(conn, reader=pay_admin)
    assert item not in set(theirs.target), theirs[["actor", "action", "target"]].to_dict("records")
    assert [(e.action, e.actor) for e in own[own.target == item].itertuples()] == [
        ("action.open", ops.email), ("action.done", ops.email), ("action.add", P_EDITOR.email)]
    assert set(own[own.target == item].partner_id) == {"payments"}


@pytest.mark.parametrize("forged", ["no-such-item", "P-INTERNAL"])
@ONCE_PAGES
def test_a_forged_item_on_the_actions_page_is_refused_by_the_core(page_env, store, forged) -> None:
    """Issue 35 (7): a forged *Item* value (an id that is none of the options, or the other
    partner's internal item) crashed the page with IndexError: it read the row before the
    core's check. The core finds no such item for this person and the page says so."""
    cfg = load_config(page_env)
    with store.engine.begin() as conn:
        _seed(conn, cfg)
        hidden = actions.items(conn, "2026-10", viewer_partner="payments")
    value = hidden[hidden.title.str.startswith(forged)].id.iloc[0] if forged == "P-INTERNAL" else forged
    at = open_page("views/actions.py", period="2026-10", title="Actions", user="editor@marketplace.example",
                   role="editor", partner_id="marketplace")
    forge(at, "action_pick", value)
    at.run()
    forge(at, "action_pick", value)
    at.button(key="action_save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == ["Not saved: no such item among this review's and the earlier open "
                                           "ones you may see; reload the page"]
    with store.engine.connect() as conn:
        assert set(actions.items(conn, "2026-10", viewer_partner=None).status) == {"open"}


# --- issue 35 (9): what binds or is owned by the other partner is a proposal -----------------


def _standing(store, review: str = "2026-10") -> dict[str, tuple[str, str]]:
    """Each decision's and item's (text or title) -> (standing, who answered), as stored."""
    with store.engine.connect() as conn:
        decided = actions.decisions(conn, review, viewer_partner=None)
        listed = actions.items(conn, review, viewer_partner=None)
    return {**{r.text: (r.standing, r.answered_by or "") for r in decided.itertuples()},
            **{r.title: (r.standing, r.answered_by or "") for r in listed.itertuples()}}


def test_a_decision_or_item_for_the_other_partner_waits_for_that_partners_answer(store) -> None:
    """Issue 35 (9): a marketplace editor recorded a decision binding only PayGate and an
    item owned by PayGate, in force at once (PayGate could only mark the item dropped).
    Now each is a proposal until an editor of PayGate accepts or rejects it; what binds
    the author's own partner or both is in force as before."""
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    ops = User("ops@partnership.example", "editor", None)
    with store.engine.begin() as conn:
        binds_them = actions.add_decision(conn, cfg, actions.NewDecision(
            "2026-10", date(2026, 10, 20), "PayGate refunds within 3 days", "payments"), actor=M_EDITOR)
        theirs = actions.add_action(conn, cfg, actions.NewAction(
            "2026-10", "PayGate: fix webhook retries", "Piotr", "payments", date(2026, 11, 30)),
            actor=M_EDITOR)
        actions.add_decision(conn, cfg, actions.NewDecision(
            "2026-10", date(2026, 10, 20), "marketplace shows PayGate first", "marketplace"), actor=M_EDITOR)
        actions.add_decision(conn, cfg, actions.NewDecision(
            "2026-10", date(2026, 10, 20), "both move to API v2"), actor=M_EDITOR)
        actions.add_action(conn, cfg, actions.NewAction(
            "2026-10", "ops: agenda for Q4", "Olga", "payments", date(2026, 11, 30)), actor=ops)
        with pytest.raises(actions.ActionError, match="an internal decision binds your partner"):
            actions.add_decision(conn, cfg, actions.NewDecision(
                "2026-10", date(2026, 10, 20), "x", "payments", "internal"), actor=M_EDITOR)
        with pytest.raises(actions.ActionError, match="is a proposal to payments.*accept or reject it first"):
            actions.set_status(conn, theirs, "dropped", actor=P_EDITOR)
        with pytest.raises(Forbidden, match="a proposal to payments is accepted or rejected by its editors"):
            actions.answer(conn, "decision", binds_them, True, actor=M_EDITOR)
    assert _standing(store) == {
        "PayGate refunds within 3 days": ("proposed", ""), "PayGate: fix webhook retries": ("proposed", ""),
        "marketplace shows PayGate first": ("in force", ""), "both move to API v2": ("in force", ""),
        "ops: agenda for Q4": ("open", "")}
    with store.engine.connect() as conn:
        waiting = actions.proposals(conn, "payments")
        frame = reading.report_for(conn, cfg, parse("2026-10"), viewer_partner="marketplace")
    assert sorted(waiting.id) == sorted([binds_them, theirs])
    rows = frame[frame.section.isin(["decision", "action"])].set_index("name")
    assert rows.loc["PayGate refunds within 3 days"].status == "proposed"
    assert "proposed by editor@marketplace.example, awaiting Demo PayGate" in \
        rows.loc["PayGate refunds within 3 days"].detail
    assert rows.loc["PayGate: fix webhook retries"].status == "proposed"
    assert rows.loc["both move to API v2"].status == "shared"

    with store.engine.begin() as conn:
        assert actions.answer(conn, "decision", binds_them, True, actor=P_EDITOR)
        assert actions.answer(conn, "action", theirs, False, actor=P_EDITOR)
        with pytest.raises(actions.ActionError, match="was already accepted by editor@paygate.example"):
            actions.answer(conn, "decision", binds_them, False, actor=P_EDITOR)
        with pytest.raises(actions.ActionError, match="was rejected by editor@paygate.example"):
            actions.set_status(conn, theirs, "open", actor=P_EDITOR)
        assert actions.answer(conn, "action", "no-such-item", True, actor=P_EDITOR) is False
        logged = audit.entries(conn, reader=User("a@x", "admin", None)).action.tolist()
        frame = reading.report_for(conn, cfg, parse("2026-10"), viewer_partner="payments")
    assert _standing(store)["PayGate refunds within 3 days"] == ("in force", P_EDITOR.email)
    assert _standing(store)["PayGate: fix webhook retries"] == ("rejected", P_EDITOR.email)
    rows = frame[frame.section.isin(["decision", "action"])].set_index("name")
    assert rows.loc["PayGate: fix webhook retries"].status == "rejected"
    assert "accepted by editor@paygate.example" in rows.loc["PayGate refunds within 3 days"].detail
    assert {"decision.propose", "action.propose", "decision.accept", "action.reject"} <= set(logged)


def test_two_editors_answering_one_proposal_at_once_give_one_answer(store, monkeypatch) -> None:
    from tests.interleave import race

    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    other = User("second@paygate.example", "editor", "payments")
    with store.engine.begin() as conn:
        item = actions.add_action(conn, cfg, actions.NewAction(
            "2026-10", "PayGate: fix webhook retries", "Piotr", "payments", date(2026, 11, 30)),
            actor=M_EDITOR)
    first, second = race(store, monkeypatch, (actions, "_proposal"),
                         lambda conn: actions.answer(conn, "action", item, True, actor=P_EDITOR),
                         lambda conn: actions.answer(conn, "action", item, False, actor=other))
    assert first.outcome() is True
    assert isinstance(second.outcome(), actions.ActionError), repr(second.outcome())
    assert "was already accepted by editor@paygate.example" in str(second.outcome())
    assert _standing(store)["PayGate: fix webhook retries"] == ("open", P_EDITOR.email)
    with store.engine.connect() as conn:
        logged = audit.entries(conn, reader=User("a@x", "admin", None)).action.tolist()
    assert logged.count("action.accept") == 1 and "action.reject" not in logged


@ONCE_PAGES
def test_the_actions_page_shows_proposals_and_the_bound_partner_answers_them(page_env, store) -> None:
    cfg = load_config(page_env)
    with store.engine.begin() as conn:
        proposed = actions.add_decision(conn, cfg, actions.NewDecision(
            "2026-10", date(2026, 10, 20), "PayGate refunds within 3 days", "payments"), actor=M_EDITOR)
    mine = open_page("views/actions.py", period="2026-10", title="Actions", user=M_EDITOR.email,
                     role="editor", partner_id="marketplace")
    decided = mine.dataframe[0].value
    assert list(decided.standing) == ["proposed to Demo PayGate"]
    assert not [b for b in mine.button if b.key in ("proposal_accept", "proposal_reject")]
    at = open_page("views/actions.py", period="2026-10", title="Actions", user=P_EDITOR.email,
                   role="editor", partner_id="payments")
    assert any("Proposals awaiting Demo PayGate" in s.value for s in at.subheader)
    at.selectbox(key="proposal_pick").set_value(f"decision:{proposed}").run()
    at.button(key="proposal_accept").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Accepted" in s.value for s in at.success), [s.value for s in at.success]
    assert list(at.dataframe[0].value.standing) == ["in force (accepted by editor@paygate.example)"]
