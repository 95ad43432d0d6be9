"""What the browser tests (tests/app/test_browser.py, tests/browser/test_new_user.py) share: where Chromium and the
screenshots are, and the few ways they drive the page. The `page` fixture itself is in tests/conftest.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
TITLE = "headscope — interpretability workbench"  # on every page once the app has loaded


def visible(locator: Any) -> Any:
    return locator.filter(visible=True).first


def open_tab(pg: Any, title: str) -> None:
    pg.get_by_role("tab", name=title, exact=True).click()
    pg.wait_for_timeout(300)  # the tab's content drawn


def click(pg: Any, name: str) -> None:
    visible(pg.get_by_role("button", name=name, exact=True)).click()


def fill_number(pg: Any, label: str, value: str) -> None:
    box = visible(pg.get_by_label(label, exact=True))
    box.fill(value)
    box.press("Enter")


def set_text(pg: Any, label: str, value: str) -> None:
    visible(pg.get_by_label(label, exact=True)).fill(value)


def toasts(pg: Any) -> list[str]:
    return pg.evaluate(
        "() => [...document.querySelectorAll('[data-testid=\"toast-body\"]')]"
        ".map(e => e.className + ' :: ' + e.innerText)"
    )


def close_toasts(pg: Any) -> None:
    for button in pg.locator('[data-testid="toast-close"]').all():
        if button.is_visible():
            button.click()


def refused(pg: Any, pattern: str) -> str:
    """The error toast whose text matches `pattern` (one line), after it appears; the toasts are then closed."""
    visible(pg.locator('[data-testid="toast-body"]').filter(has_text=re.compile(pattern))).wait_for()
    [toast] = [t for t in toasts(pg) if re.search(pattern, t)]
    close_toasts(pg)
    return toast
