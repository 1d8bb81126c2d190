"""Driving a Gradio page in a `tests.chromium.Tab`: set a field, press a button, open a tab.

Shared by the explorer tests (`tests/test_app.py`) and the screenshot script (`tests/screenshots.py`).
"""

from __future__ import annotations

import json
import socket

from tests.chromium import Tab

SET_VALUE = """(selector, value) => {
    const el = document.querySelector(selector);
    const proto = el.tagName === 'TEXTAREA' ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
    Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, value);
    for (const kind of ['input', 'change', 'blur']) el.dispatchEvent(new Event(kind, {bubbles: true}));
    return el.value;
}"""


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLIDER_NUMBER = "input[type=number]"


def set_field(tab: Tab, selector: str, value) -> None:
    """Type `value` into the input or textarea at `selector`, as a user would (input, change, blur).

    A slider (a number box `... input[type=number]` beside an `input[type=range]`) can miss a value
    typed while its tab is still mounting, and a button pressed then sends the old value. So for a
    slider the value is typed again until the slider's range input shows it (a plain number box
    has no range and is typed once).
    """
    typed = f"({SET_VALUE})({json.dumps(selector)}, {json.dumps(str(value))})"
    if not selector.endswith(SLIDER_NUMBER):
        tab.js(typed)
        return
    slider = json.dumps(selector.removesuffix(SLIDER_NUMBER) + "input[type=range]")
    shown = f"(r => !r || Number(r.value) === {float(value)!r})(document.querySelector({slider}))"
    tab.wait(f"({typed}, {shown})", 10.0)


def value_of(selector: str) -> str:
    """The JavaScript expression for the value of the input or textarea at `selector` ('' when absent)."""
    return f"document.querySelector({json.dumps(selector)})?.value ?? ''"


def click(tab: Tab, selector: str) -> None:
    tab.js(f"document.querySelector({json.dumps(selector)}).click()")


def open_tab(tab: Tab, label: str) -> None:
    """Select the Gradio tab whose button reads `label`."""
    find = f"b => b.textContent.trim() === {json.dumps(label)}"
    tab.js(f"[...document.querySelectorAll('button[role=tab]')].find({find}).click()")
    tab.wait("document.querySelectorAll('button[role=tab][aria-selected=true]').length > 0")


def press(tab: Tab, button: str, status: str, timeout: float = 120.0) -> str:
    """Press `button` and wait for its tab's status box to change; the new status."""
    before = tab.js(value_of(status))
    click(tab, button)
    return tab.wait(
        f"(() => {{ const v = {value_of(status)}; return v && v !== {json.dumps(before)} ? v : ''; }})()", timeout
    )
