"""A real browser for the page's tests: Debian's chromium, headless, driven by Selenium 4 through
Debian's chromedriver; and ``soiree serve``'s application run in-process on a free port.

A missing chromium or chromedriver fails the test (never a skip): ``.ci/run`` installs them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from stream.http.app import SafeAccessLogger, create_web_app
from stream.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chrome(width: int = 1280, height: int = 900) -> WebDriver:
    """Headless chromium with the browser's console log kept (``driver.get_log("browser")``)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: install Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver; .ci/run does it)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


def severe_console_entries(driver: WebDriver) -> list[dict[str, Any]]:
    """The console's SEVERE entries since the last call (errors, failed requests)."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``create_web_app(settings)`` on 127.0.0.1:<free port>, in a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name="serve", daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("the web app did not start within 30 s")
        if self._error is not None:
            raise AssertionError(f"the web app did not start: {self._error!r}") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # noqa: BLE001  # reported to the test's thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._cleanup())
        self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(
            create_web_app(self.settings), access_log_class=SafeAccessLogger, shutdown_timeout=1
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what} (last: {last!r})")
