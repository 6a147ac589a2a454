"""Which receivers hear an alert: every route that matches sends it to its receivers.

A route matches when the alert's partner, severity and rule are each among the route's
(a route that names none of a kind matches any; an alert of the partnership, about
no one partner, matches any route's partners). Without routes every receiver hears
every alert, so a single ``type = "webhook"`` receiver works with no more configuration.
Each receiver appears once per alert, however many routes name it.
"""

from __future__ import annotations

from partnerboard.core.config import Config
from partnerboard.core.config.alerts import Receiver, Route


def matches(route: Route, *, partner_id: str | None, severity: str, rule: str) -> bool:
    """Does ``route`` take this alert? A route naming partners takes their alerts and the
    partnership's own (``partner_id`` None: both sides' business), so each side's on-call
    hears its own problems and both hear the shared ones."""
    return ((route.partners is None or partner_id is None or partner_id in route.partners)
            and (route.severities is None or severity in route.severities)
            and (route.rules is None or rule in route.rules))


def receivers_for(config: Config, *, partner_id: str | None, severity: str, rule: str) -> list[Receiver]:
    alerts = config.alerts
    if not alerts.routes:
        return list(alerts.receivers)
    wanted: dict[str, None] = {}
    for route in alerts.routes:
        if matches(route, partner_id=partner_id, severity=severity, rule=rule):
            wanted.update(dict.fromkeys(route.receivers))
    return [alerts.receiver(r) for r in wanted]


def visible_receivers(config: Config, reader_partner: str | None) -> list[Receiver]:
    """Receivers whose deliveries a reader may see: the partnership's and their own
    partner's (a receiver is one side's on-call setup); people of both partners see all."""
    return [r for r in config.alerts.receivers
            if reader_partner is None or r.partner is None or r.partner == reader_partner]
