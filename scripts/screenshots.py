"""Remake the README's screenshots of the live page (docs/screenshots/): the 2017 second round
with about 60 % of its bureaux in, compared with the whole first round, in a real headless
chromium. Kafka and Redis running (``soiree up``); from the checkout's root::

    .venv/bin/python -m scripts.screenshots

Not a test: it only writes pictures (the page's behaviour is tested in tests/test_page.py).
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timedelta
from pathlib import Path

from stream.domain.messages import Election
from stream.settings import Settings
from tests.browser import Server, chrome, wait_for
from tests.harness import ROOT, ROUND_FILES, Stack, pres2017_dir
from tests.test_page import PARIS, assert_no_console_errors, text


def screenshots(s: Stack, data_dir: Path) -> None:
    """The README's screenshots: the 2017 second round with about 60 % of the bureaux in (a random,
    seeded sample; the last part published while the page is open, for its latest events), on a
    desktop in English and on a phone (375 px) in French."""
    from stream.sources.ministry import election_from_ministry, results_from_ministry

    tag = os.urandom(2).hex()
    first_round = data_dir / ROUND_FILES[1]
    t1 = election_from_ministry(first_round, f"pres2017-t1-{tag}", "Présidentielle 2017, 1er tour")
    s.register(t1)
    s.start_worker()
    s.publish(results_from_ministry(first_round, t1.election))
    s.wait_until(
        lambda: (
            (st := s.standings(t1.election, "nation", "FR")) is not None
            and st.bureaux_reported == st.bureaux_total
        ),
        600,
        "the whole first round",
    )
    path = data_dir / ROUND_FILES[2]
    t2 = election_from_ministry(path, f"pres2017-t2-{tag}", "Présidentielle 2017, 2d tour")
    e = Election.model_validate({**t2.model_dump(), "round": 2, "compare_to": t1.election, "rehearsal": True})
    s.register(e)
    rows = list(results_from_ministry(path, e.election))
    sample = random.Random(2017).sample(rows, k=int(len(rows) * 0.6))
    evening = datetime(2017, 5, 7, 20, 0, tzinfo=PARIS)
    for i, row in enumerate(sample):  # reported between 20:00 and 21:30
        row["reported_at"] = (evening + timedelta(seconds=5400 * i // len(sample))).isoformat()
    early, late = sample[: len(sample) * 11 // 12], sample[len(sample) * 11 // 12 :]
    s.publish(early)
    s.wait_until(
        lambda: (
            (st := s.standings(e.election, "nation", "FR")) is not None and st.bureaux_reported == len(early)
        ),
        600,
        "the first part at the nation",
    )
    out = ROOT / "docs/screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with Server(s.settings) as server:
        desktop = chrome(1280, 1500)
        phone = chrome(375, 2200)
        try:
            desktop.get(f"{server.url}/?election={e.election}&lang=en")
            wait_for(lambda: desktop.execute_script("return window.soireePage.live"), 30, "the stream")
            s.publish(late)
            s.wait_until(
                lambda: (
                    (st := s.standings(e.election, "nation", "FR")) is not None
                    and st.bureaux_reported == len(sample)
                ),
                300,
                "the whole sample at the nation",
            )
            time.sleep(2)
            desktop.save_screenshot(str(out / "page-desktop.png"))
            assert_no_console_errors(desktop)
            phone.get(f"{server.url}/?election={e.election}&lang=fr")
            wait_for(lambda: text(phone, "#f-voters") != "—", 30, "the figures")
            time.sleep(0.5)
            phone.save_screenshot(str(out / "page-phone.png"))
            assert_no_console_errors(phone)
        finally:
            desktop.quit()
            phone.quit()


def main() -> None:
    logs = ROOT / ".soiree/logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(Settings(), "shots", logs)
    try:
        screenshots(stack, pres2017_dir())
    finally:
        stack.stop()
        stack.forget()
    print(f"written: {ROOT / 'docs/screenshots'}")


if __name__ == "__main__":
    main()
