"""What a forged websocket message makes a page see: a choice that is none of the options.

Streamlit hands a selectbox or multiselect value that matches no option to the page as is
(``SelectboxSerde.deserialize``), so a page must never look a chosen value up before the
core's check. AppTest only sends options, so ``forge`` makes one widget of the current
run send ``value`` on the next run; call it again after each run (AppTest rebuilds its
elements)."""

from __future__ import annotations

from typing import Any

from streamlit.proto.WidgetStates_pb2 import WidgetState


def forge(at: Any, key: str, value: str | list[str]) -> None:
    """The selectbox (``value`` a string) or multiselect (a list) ``key`` of ``at`` sends
    ``value`` on the next run."""
    widget = at.selectbox(key=key) if isinstance(value, str) else at.multiselect(key=key)

    class Forged(type(widget)):
        @property
        def _widget_state(self) -> WidgetState:
            state = WidgetState(id=self.id)
            if isinstance(value, str):
                state.string_value = value
            else:
                state.string_array_value.data[:] = value
            return state

    widget.__class__ = Forged
