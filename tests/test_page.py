"""The live page in a real browser (headless chromium through Selenium) against the real service
(``create_web_app``) and a real worker: the figures it shows are the worker's, a report published
while it is open changes them without a reload, the embargo hides everything until publish_after,
the rehearsal banner, both languages, and no error in the browser's console.

The README's screenshots are made by ``scripts/screenshots.py``, not by a test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from stream.domain.messages import Election, Standings
from stream.http.page import PALETTE, UI, choose_language

from .browser import Server, chrome, severe_console_entries, wait_for
from .harness import ROOT, Stack

PARIS = timezone(timedelta(hours=2))

#: (bureau, commune, commune name, department, department name, circonscription, registered)
ROLL = [
    ("42218-0001", "42218", "Saint-Étienne", "42", "Loire", "42-01", 800),
    ("42218-0002", "42218", "Saint-Étienne", "42", "Loire", "42-01", 900),
    ("42095-0001", "42095", "Firminy", "42", "Loire", "42-02", 700),
    ("69123-0001", "69123", "Lyon", "69", "Rhône", "69-01", 1000),
    ("75056-0001", "75056", "Paris", "75", "Paris", "75-01", 1200),
    ("13055-0001", "13055", "Marseille", "13", "Bouches-du-Rhône", "13-01", 1100),
    ("2A004-0001", "2A004", "Ajaccio", "2A", "Corse-du-Sud", "2A-01", 600),
    ("ZA101-0001", "ZA101", "Les Abymes", "ZA", "Guadeloupe", "ZA-01", 500),
    (
        "ZZ001-0001",
        "ZZ001",
        "Londres <script>alert(1)</script>",
        "ZZ",
        "Français de l'étranger",
        "ZZ-01",
        400,
    ),
]
CANDIDATES = {"A": "Alice <b>&amp;</b> Co", "B": "Bob", "C": "Chloé"}
#: Results at first: Loire led by A, Rhône by B, Paris by C, …; 42218-0002, 42095-0001 and ZZ still out.
FIRST = {
    "42218-0001": {"A": 300, "B": 200, "C": 100},
    "69123-0001": {"A": 200, "B": 450, "C": 100},
    "75056-0001": {"A": 250, "B": 300, "C": 500},
    "13055-0001": {"A": 420, "B": 300, "C": 150},
    "2A004-0001": {"A": 100, "B": 250, "C": 90},
    "ZA101-0001": {"A": 50, "B": 60, "C": 200},
}
#: Published while the page is open: the Loire goes over to B.
LATER = {"42218-0002": {"A": 100, "B": 600, "C": 50}}


def election(name: str, *, publish_after: datetime | None = None, rehearsal: bool = False) -> Election:
    return Election.model_validate(
        {
            "election": f"page-{name}-{os.urandom(3).hex()}",
            "name": f"Page test <{name}>",
            "candidates": [{"id": c, "name": n} for c, n in CANDIDATES.items()],
            "bureaux": [
                dict(
                    bureau=b,
                    commune=c,
                    commune_name=cn,
                    department=d,
                    department_name=dn,
                    circonscription=circ,
                    registered=r,
                )
                for b, c, cn, d, dn, circ, r in ROLL
            ],
            "publish_after": publish_after.isoformat() if publish_after else None,
            "rehearsal": rehearsal,
        }
    )


def reports(e: str, votes_by_bureau: dict[str, dict[str, int]], seq: int = 1) -> list[dict[str, Any]]:
    at = datetime(2017, 5, 7, 20, 5, tzinfo=PARIS)
    return [
        {
            "election": e,
            "bureau": bureau,
            "seq": seq,
            "reported_at": (at + timedelta(minutes=i)).isoformat(),
            "voters": sum(votes.values()) + 10,
            "blank": 6,
            "invalid": 4,
            "votes": votes,
        }
        for i, (bureau, votes) in enumerate(votes_by_bureau.items())
    ]


def number(text: str) -> float | None:
    """A figure as the page shows it in English ("1,234", "12.34%") or French ("1 234", "12,34 %");
    None for the dash of a figure not known yet."""
    if text.strip() in ("", "—"):
        return None
    cleaned = re.sub(r"[\s\u00a0\u202f%]", "", text)
    if "," in cleaned and "." not in cleaned and re.search(r",\d{2}$", cleaned):
        cleaned = cleaned.replace(",", ".")
    return float(cleaned.replace(",", ""))


def text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).get_attribute("textContent")).strip()


def shown_figures(driver: WebDriver) -> dict[str, Any]:
    """What the page shows of its own area: votes and shares per candidate, turnout, reporting."""
    figures: dict[str, Any] = {"votes": {}, "shares": {}}
    for row in driver.find_elements(By.CSS_SELECTOR, "#candidates tbody tr"):
        candidate = str(row.get_attribute("data-candidate"))
        cell = row.find_element
        figures["votes"][candidate] = number(
            str(cell(By.CSS_SELECTOR, ".votes").get_attribute("textContent"))
        )
        figures["shares"][candidate] = number(
            str(cell(By.CSS_SELECTOR, ".share").get_attribute("textContent"))
        )
    figures["turnout"] = number(text(driver, "#f-turnout"))
    figures["voters"] = number(text(driver, "#f-voters"))
    figures["reporting"] = text(driver, "#f-reporting").split("(")[0].replace(" ", "")
    return figures


def expected_figures(st: Standings) -> dict[str, Any]:
    return {
        "votes": {c: float(st.votes.get(c, 0)) for c in CANDIDATES},
        "shares": {c: round(st.shares.get(c, 0.0), 2) for c in CANDIDATES},
        "turnout": round(st.turnout or 0.0, 2),
        "voters": float(st.voters),
        "reporting": f"{st.bureaux_reported}/{st.bureaux_total}",
    }


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def map_fill(driver: WebDriver, department: str) -> str:
    path = driver.find_element(By.CSS_SELECTOR, f'.map-svg path[data-area="{department}"]')
    return str(driver.execute_script("return getComputedStyle(arguments[0]).fill", path))


def cli_results(stack: Stack, *args: str) -> Standings:
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", "results", *args, "--json"],
        capture_output=True,
        text=True,
        env=stack.env(),
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return Standings.model_validate_json(done.stdout)


def assert_no_console_errors(driver: WebDriver) -> None:
    errors = severe_console_entries(driver)
    assert not errors, f"errors in the browser's console: {errors}"


def start(stack: Stack, e: Election, first: dict[str, dict[str, int]]) -> None:
    stack.register(e)
    stack.start_worker()
    stack.publish(reports(e.election, first))
    wanted = len(first)
    stack.wait_until(
        lambda: (
            (st := stack.standings(e.election, "nation", "FR")) is not None and st.bureaux_reported == wanted
        ),
        90,
        "the first reports at the nation",
    )


def test_language_choice() -> None:
    assert choose_language("en", "fr-FR,fr;q=0.9") == "en"
    assert choose_language(None, "de-DE,en-GB;q=0.8,fr;q=0.7") == "en"
    assert choose_language(None, "en;q=0.5,fr-CA;q=0.9") == "fr"
    assert choose_language("xx", None) == "fr"
    assert UI["fr"].keys() == UI["en"].keys()


def test_page_shows_the_workers_figures_and_follows_the_stream(stack: Any) -> None:
    s: Stack = stack("page")
    e = election("live", rehearsal=True)
    start(s, e, FIRST)
    driver = chrome()
    try:
        with Server(s.settings) as server:
            # -- the nation, as `soiree results --json` prints it --------------------------------
            driver.get(f"{server.url}/?election={e.election}&lang=en")
            nation = cli_results(s, "nation", "--election", e.election)
            wait_for(lambda: shown_figures(driver) == expected_figures(nation), 10, "the nation's figures")
            assert text(driver, "#rehearsal") == "REHEARSAL — not real results"
            assert driver.find_element(By.ID, "rehearsal").is_displayed()
            assert text(driver, "#f-as-of") == "Latest result at 20:10:00"
            assert "Alice <b>&amp;</b> Co" in text(driver, '#candidates tr[data-candidate="A"] th')
            assert driver.find_elements(By.CSS_SELECTOR, "#candidates b") == []  # names are text
            assert "Map: Victor Cazanave, svg-maps," in text(driver, ".map figcaption")
            licence = driver.find_element(By.CSS_SELECTOR, '.map figcaption a[rel="license"]')
            assert licence.text == "CC BY 4.0"
            assert len(driver.find_elements(By.CSS_SELECTOR, ".map-svg path[data-area]")) == 96

            # the map and the department table: a colour per leader, grey without results
            colours = dict(zip(CANDIDATES, PALETTE))
            for department in ("42", "69", "75", "13", "2A"):
                st = s.standings(e.election, "department", department)
                assert st is not None and st.leader is not None
                assert map_fill(driver, department) == rgb(colours[st.leader])
                row = f'#table-department tr[data-area="{department}"]'
                assert number(text(driver, f"{row} .turnout")) == round(st.turnout or 0, 2)
                assert number(text(driver, f"{row} .lshare")) == round(st.shares[st.leader], 2)
                assert text(driver, f"{row} .leader") == CANDIDATES[st.leader]
            assert map_fill(driver, "01") == rgb("#d4d4d4")  # Ain: not in this election
            tile = driver.find_element(By.CSS_SELECTOR, '.overseas a[data-area="ZA"]')
            assert tile.get_attribute("data-leader") == "C" and "Chloé" in tile.text
            assert driver.find_element(By.CSS_SELECTOR, '.overseas a[data-area="ZZ"]').get_attribute(
                "data-leader"
            ) in ("", None)

            # the department table sorts on its headers
            driver.find_element(By.CSS_SELECTOR, '#table-department button[data-col="3"]').click()
            order = [
                r.get_attribute("data-area")
                for r in driver.find_elements(By.CSS_SELECTOR, "#table-department tbody tr")
            ]
            turnouts = {
                d: (st.turnout if (st := s.standings(e.election, "department", d)) else -1.0)
                for d in ("42", "69", "75", "13", "2A", "ZA", "ZZ")
            }
            assert order == sorted(turnouts, key=lambda d: turnouts[d] or -1.0)
            assert_no_console_errors(driver)

            # -- three departments, each on its own page -----------------------------------------
            for department in ("42", "69", "75"):
                driver.get(f"{server.url}/e/{e.election}/department/{department}?lang=en")
                st = cli_results(s, "department", department, "--election", e.election)
                wait_for(
                    lambda st=st: shown_figures(driver) == expected_figures(st),
                    10,
                    f"department {department}",
                )
                assert driver.find_element(By.ID, "rehearsal").is_displayed()
                communes = driver.find_elements(By.CSS_SELECTOR, "#table-commune tbody tr")
                assert communes, "a department page lists its communes"
            driver.get(f"{server.url}/e/{e.election}/commune/ZZ001?lang=en")
            assert text(driver, "#area-name") == "Londres <script>alert(1)</script>"
            assert_no_console_errors(driver)

            # -- live: a report published while the page is open -------------------------------
            driver.get(f"{server.url}/?election={e.election}&lang=en")
            wait_for(lambda: driver.execute_script("return window.soireePage.live"), 10, "the event stream")
            driver.execute_script("window.notReloaded = 'same document'")
            started = driver.execute_script("return window.soireePage.started")
            before = s.standings(e.election, "nation", "FR")
            assert before is not None and map_fill(driver, "42") == rgb(colours["A"])
            s.publish(reports(e.election, LATER))
            published = time.monotonic()
            wait_for(
                lambda: (
                    map_fill(driver, "42") == rgb(colours["B"])
                    and shown_figures(driver)["votes"]["B"] == before.votes["B"] + LATER["42218-0002"]["B"]
                ),
                2.0,
                "the Loire to turn to B and the nation to count the new report, within 2 s",
            )
            elapsed = time.monotonic() - published
            after = cli_results(s, "nation", "--election", e.election)
            assert shown_figures(driver) == expected_figures(after)
            assert driver.execute_script("return window.notReloaded") == "same document"
            assert driver.execute_script("return window.soireePage.started") == started
            assert driver.execute_script("return window.soireePage.updates") >= 1
            wait_for(lambda: "Loire" in text(driver, "#events"), 2, "the Loire's event in the list")
            print(f"page updated {elapsed:.2f} s after the report was published")
            assert_no_console_errors(driver)

            # -- in French ----------------------------------------------------------------------
            driver.get(f"{server.url}/?election={e.election}&lang=fr")
            wait_for(lambda: shown_figures(driver) == expected_figures(after), 10, "the figures, in French")
            assert text(driver, "#rehearsal") == "RÉPÉTITION — résultats fictifs"
            assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
            labels = [t.text for t in driver.find_elements(By.CSS_SELECTOR, ".summary dt")]
            assert labels == ["Participation", "Inscrits", "Votants", "Blancs", "Nuls", "Exprimés"]
            assert text(driver, "#t-department") == "Départements"
            assert re.fullmatch(r"\d{1,2},\d\d\u00a0%", text(driver, "#f-turnout"))
            assert "Carte : Victor Cazanave, svg-maps," in text(driver, ".map figcaption")
            assert_no_console_errors(driver)
            driver.get(f"{server.url}/?election={e.election}&lang=en")
            labels = [t.text for t in driver.find_elements(By.CSS_SELECTOR, ".summary dt")]
            assert labels == ["Turnout", "Registered", "Voters", "Blank", "Spoiled", "Valid votes"]
    finally:
        driver.quit()


def test_page_waits_for_publish_after_then_fills(stack: Any) -> None:
    s: Stack = stack("embargo")
    publish_after = (datetime.now(PARIS) + timedelta(seconds=50)).replace(microsecond=0)  # setup: ~10-20 s
    e = election("embargo", publish_after=publish_after)
    start(s, e, FIRST)  # the engine counts during the embargo
    nation = s.standings(e.election, "nation", "FR")
    assert nation is not None
    driver = chrome()
    try:
        with Server(s.settings) as server:
            assert datetime.now(PARIS) < publish_after - timedelta(seconds=5), "the setup took too long"
            driver.get(f"{server.url}/?election={e.election}&lang=en")
            embargo = driver.find_element(By.ID, "embargo")
            assert embargo.is_displayed()
            assert text(driver, "#embargo-time") == f"Results at {publish_after:%H:%M}"
            assert not driver.find_element(By.ID, "figures").is_displayed()
            assert not driver.find_elements(By.CSS_SELECTOR, ".rehearsal")
            shown = [
                c.get_attribute("textContent")
                for c in driver.find_elements(By.CSS_SELECTOR, "#candidates .votes")
            ]
            assert set(shown) == {"—"}, "no figure before publish_after"
            assert str(nation.voters) not in str(driver.page_source)
            driver.get(f"{server.url}/e/{e.election}/department/42?lang=fr")
            assert text(driver, "#embargo-time") == f"Résultats à {publish_after:%H:%M}"
            driver.get(f"{server.url}/?election={e.election}&lang=en")
            driver.execute_script("window.notReloaded = 'same document'")
            remaining = (publish_after - datetime.now(PARIS)).total_seconds()
            assert remaining > 1, "the embargo ended before the page could be checked"
            wait_for(
                lambda: shown_figures(driver) == expected_figures(nation),
                remaining + 5,
                "the figures once publish_after passed",
            )
            assert datetime.now(PARIS) >= publish_after
            assert not driver.find_element(By.ID, "embargo").is_displayed()
            assert driver.find_element(By.ID, "figures").is_displayed()
            assert driver.execute_script("return window.notReloaded") == "same document"
            assert_no_console_errors(driver)
    finally:
        driver.quit()
