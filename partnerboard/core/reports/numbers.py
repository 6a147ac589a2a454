"""A KPI value as people read it: the Board, the report preview and the review pack all
use this one formatter, so a number reads the same on screen and on paper.

Digits per unit (``%`` and money 2, counts 0, milliseconds 0, minutes/hours/days 1),
thousands separated by a narrow no-break space, *no data* for a missing value (never 0).
"""

from __future__ import annotations

import math

UNIT_DIGITS = {"%": 2, "PLN": 2, "EUR": 2, "USD": 2, "count": 0, "ms": 0, "min": 1, "h": 1, "d": 1, "pts": 1}
NO_DATA = "no data"


def kpi_value(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_DATA
    digits = UNIT_DIGITS.get(unit, 2)
    text = f"{value:,.{digits}f}".replace(",", "\u202f")
    if unit == "count":
        return text
    return f"{text} {unit}" if unit != "%" else f"{text} %"
