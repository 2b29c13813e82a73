"""A walk through the web app in Debian's chromium (Playwright), checking every page it
shows as it goes: a screenshot (test-artifacts/web/<journey>/NN-<name>.png), axe-core
with no serious or critical violation, no horizontal scrolling at 375 px wide, a
title, a main landmark, and keyboard focus reaching the skip link first."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import need

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 375, "height": 740}

# The serious and critical violations axe finds on the page (a list of dicts).
RUN_AXE = """async () => {
  const found = await axe.run(document, {resultTypes: ["violations"]});
  return found.violations.filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}));
}"""
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@contextmanager
def chromium() -> Iterator[Any]:
    need(shutil.which("chromium") is not None, "Debian's chromium (apt-get install chromium)")
    need(AXE.exists(), "axe-core (cd tests/web && npm ci)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Walk:
    """One person's walk: a phone-sized browser context of its own, every page checked."""

    def __init__(self, browser: Any, base: str, shots: Path, *, locale: str = "en-GB") -> None:
        self.base = base
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)
        self.context = browser.new_context(viewport=PHONE, locale=locale)
        # axe comes in as an init script: the pages' own Content-Security-Policy stays in force.
        self.context.add_init_script(path=str(AXE))
        self.page = self.context.new_page()
        self.status = 0  # the last page's HTTP status (each check asks for one that is not an error)
        self.page.on("response", self._response)
        self.count = 0
        self.checked: list[str] = []

    def _response(self, response: Any) -> None:
        if response.request.is_navigation_request() and response.frame == self.page.main_frame:
            self.status = response.status

    def close(self) -> None:
        self.context.close()

    def goto(self, path: str, name: str, *, status: int = 200) -> Any:
        self.page.goto(self.base + path)
        return self.check(name, status=status)

    def check(self, name: str, *, status: int = 200) -> Any:
        """Check the page now shown, and keep its screenshot. Every page Merci shows a
        person (the web app's, the embeds', the directory's) wears the web app's frame."""
        page = self.page
        page.wait_for_load_state("load")
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        page.screenshot(path=str(self.shots / f"{self.count:02d}-{slug}.png"), full_page=True)
        where = f"{name} ({page.url})"
        assert self.status == status, f"{where}: answered {self.status}"
        assert page.title().strip(), f"{where}: no title"
        assert page.locator("main").count() == 1, f"{where}: no main landmark"
        violations = page.evaluate(RUN_AXE)
        assert not violations, f"{where}: axe found {violations}"
        overflow = page.evaluate(OVERFLOW)
        assert overflow <= 0, f"{where}: scrolls {overflow} px sideways at 375 px wide"
        self.checked.append(page.url)
        # The keyboard: the first Tab lands on the skip link, which leads to the content.
        # (From the top of the page, whatever has focus now: an autofocused field, say.)
        page.evaluate("""() => { const start = document.createElement("span"); start.id = "tab-start";
                                 start.tabIndex = -1; document.body.prepend(start); start.focus(); }""")
        page.keyboard.press("Tab")
        page.evaluate("() => document.getElementById('tab-start').remove()")
        focused = page.evaluate("() => document.activeElement && document.activeElement.className")
        assert focused == "skip", f"{where}: the first Tab focused {focused!r}, not the skip link"
        page.evaluate("() => document.activeElement.blur()")
        return page
