"""The live results page: server-rendered HTML, one small script (``static/page.js``), no build step.

``GET /`` shows the nation of an election (``?election=ID``, else the latest registered one: the
one with the latest ``publish_after``, then the last id), ``GET /e/{election}/{level}/{area}`` any
area with the table of its children, ``GET /static/...`` the script, the style sheet and the map.

The server renders the page's structure (names, rows, the map, the strings of the chosen
language) and, when the results are public, the standings it read from Redis for the area and its
children, as JSON inside the page; the script draws the figures from them, then follows the
Server-Sent Events of ``/api/elections/{id}/events`` and changes only what an event is about.
Before ``publish_after`` the page holds no figure: it says when the results come, and the
script asks the API again at that moment (an operator's ``?token=`` goes with its requests).

Every name is free text from the definition: escaped in HTML, and the JSON inside the page has
``<``, ``>`` and ``&`` escaped so that no name can close its ``<script>`` element.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from stream.adapters.redis.clients import async_client
from stream.adapters.redis.keys import ELECTIONS, election_key, results_key
from stream.domain.messages import NATION, Election
from stream.domain.regions import REGION_NAMES, region_of
from stream.domain.roll import ElectionIndex
from stream.http.api import SETTINGS
from stream.settings import Settings

__all__ = ["setup", "UI", "OVERSEAS", "STATIC_DIR", "choose_language", "children_of"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAP_FILE = STATIC_DIR / "france.departments.svg"
LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"

#: Departments off the metropolitan map, shown beside it (ministry codes), with fallback names.
OVERSEAS: dict[str, str] = {
    "ZA": "Guadeloupe",
    "ZB": "Martinique",
    "ZC": "Guyane",
    "ZD": "La Réunion",
    "ZM": "Mayotte",
    "ZN": "Nouvelle-Calédonie",
    "ZP": "Polynésie française",
    "ZS": "Saint-Pierre-et-Miquelon",
    "ZW": "Wallis-et-Futuna",
    "ZX": "Saint-Martin / Saint-Barthélemy",
    "ZZ": "Français de l'étranger",
}

#: Colours of candidates, in the definition's order (then around the colour wheel).
PALETTE = (
    "#4e79a7",
    "#e15759",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#2f4b7c",
    "#a05195",
    "#003f5c",
)

#: Every string of the page, in both languages (the script gets the chosen language's).
UI: dict[str, dict[str, str]] = {
    "fr": {
        "title": "Résultats",
        "rehearsal": "RÉPÉTITION — résultats fictifs",
        "embargo": "Résultats à {time}",
        "embargo_detail": "Aucun résultat n'est publié avant la fermeture des derniers bureaux de vote.",
        "nation": "France",
        "candidate": "Candidat",
        "party": "Nuance",
        "votes": "Voix",
        "share": "% exprimés",
        "change": "Évolution",
        "turnout": "Participation",
        "registered": "Inscrits",
        "voters": "Votants",
        "blank": "Blancs",
        "invalid": "Nuls",
        "expressed": "Exprimés",
        "reporting": "Bureaux dépouillés",
        "as_of": "Dernier résultat à {time}",
        "no_results": "Pas encore de résultat",
        "decided": "Acquis : {who} en tête quoi que disent les bureaux restants",
        "qualified": "Qualifiés : {who}",
        "not_decided": "Pas encore acquis",
        "tied": "Égalité : {who}",
        "compared": "Par rapport à {election} (mêmes bureaux)",
        "points": "pts",
        "map": "Carte des départements de métropole, couleur du candidat en tête",
        "map_credit": "Carte : Victor Cazanave, svg-maps,",
        "overseas": "Outre-mer et étranger",
        "legend": "Légende",
        "no_result_legend": "pas encore de résultat",
        "tie_legend": "égalité",
        "departments": "Départements",
        "regions": "Régions",
        "circonscriptions": "Circonscriptions",
        "communes": "Communes",
        "bureaux": "Bureaux de vote",
        "area": "Zone",
        "leader": "En tête",
        "leader_share": "% du premier",
        "events": "Derniers événements",
        "no_events": "En attente des prochains résultats…",
        "filter": "Filtrer",
        "show_all": "Tout afficher ({n})",
        "shown": "{shown} sur {n}",
        "elections": "Autres élections",
        "language": "English",
        "sort": "Trier par cette colonne",
        "kind_reported": "premiers résultats",
        "kind_corrected": "résultat corrigé",
        "kind_leader_changed": "{leader} passe en tête",
        "kind_turnout_changed": "participation {turnout}",
        "kind_complete": "tous les bureaux dépouillés",
        "kind_decided": "résultat acquis : {leader}",
        "kind_undecided": "résultat de nouveau ouvert",
        "kind_turnout_reported": "participation à {hour} : {turnout}",
        "connection_lost": "Connexion perdue, reconnexion…",
        "not_found": "Zone inconnue",
        "no_election": "Aucune élection n'est enregistrée.",
        "breadcrumb": "Fil d'Ariane",
    },
    "en": {
        "title": "Results",
        "rehearsal": "REHEARSAL — not real results",
        "embargo": "Results at {time}",
        "embargo_detail": "No result is published before the last polling stations close.",
        "nation": "France",
        "candidate": "Candidate",
        "party": "Party",
        "votes": "Votes",
        "share": "% of valid votes",
        "change": "Change",
        "turnout": "Turnout",
        "registered": "Registered",
        "voters": "Voters",
        "blank": "Blank",
        "invalid": "Spoiled",
        "expressed": "Valid votes",
        "reporting": "Polling stations counted",
        "as_of": "Latest result at {time}",
        "no_results": "No results yet",
        "decided": "Called: {who} leads whatever the remaining stations say",
        "qualified": "Qualified: {who}",
        "not_decided": "Not called yet",
        "tied": "Tie: {who}",
        "compared": "Compared with {election} (same polling stations)",
        "points": "pts",
        "map": "Map of metropolitan departments, coloured by the leading candidate",
        "map_credit": "Map: Victor Cazanave, svg-maps,",
        "overseas": "Overseas and abroad",
        "legend": "Legend",
        "no_result_legend": "no result yet",
        "tie_legend": "tie",
        "departments": "Departments",
        "regions": "Regions",
        "circonscriptions": "Constituencies",
        "communes": "Communes",
        "bureaux": "Polling stations",
        "area": "Area",
        "leader": "Leading",
        "leader_share": "Leader %",
        "events": "Latest events",
        "no_events": "Waiting for the next results…",
        "filter": "Filter",
        "show_all": "Show all ({n})",
        "shown": "{shown} of {n}",
        "elections": "Other elections",
        "language": "Français",
        "sort": "Sort by this column",
        "kind_reported": "first results",
        "kind_corrected": "result corrected",
        "kind_leader_changed": "{leader} takes the lead",
        "kind_turnout_changed": "turnout {turnout}",
        "kind_complete": "every polling station counted",
        "kind_decided": "called: {leader}",
        "kind_undecided": "race open again",
        "kind_turnout_reported": "turnout at {hour}: {turnout}",
        "connection_lost": "Connection lost, reconnecting…",
        "not_found": "Unknown area",
        "no_election": "No election is registered.",
        "breadcrumb": "Breadcrumb",
    },
}

LANGUAGES = tuple(UI)
#: The table heading of each level of children.
CHILD_TITLE = {
    "region": "regions",
    "department": "departments",
    "circonscription": "circonscriptions",
    "commune": "communes",
    "bureau": "bureaux",
}
#: The levels whose standings the page of a level shows (its own first).
CHILD_LEVELS: dict[str, tuple[str, ...]] = {
    "nation": ("region", "department"),
    "region": ("department",),
    "department": ("circonscription", "commune"),
    "circonscription": ("bureau",),
    "commune": ("bureau",),
    "bureau": (),
}
#: A definition is looked up again in Redis at most this often (a replaced one is then seen).
DEFINITION_TTL = 5.0


def choose_language(query: str | None, accept_language: str | None) -> str:
    """``?lang=`` when it names a language of the page, else the best of ``Accept-Language``, else French."""
    if query in LANGUAGES:
        return query
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        match = re.search(r"q=([0-9.]+)", params)
        if match:
            try:
                quality = float(match.group(1))
            except ValueError:
                quality = 0.0
        language = tag.strip().lower().split("-")[0]
        if language in LANGUAGES and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else "fr"


def _department_order(code: str) -> tuple[int, str]:
    """01, 02, …, 19, 2A, 2B, 21, …, 95, then ZA…ZZ (the ministry's order)."""
    if code in ("2A", "2B"):
        return (20, code)
    return (int(code), "") if code.isdigit() else (1000, code)


@dataclass
class Definition:
    """An election and what its pages need from its roll: names and each area's children."""

    election: Election
    digest: str
    children: dict[tuple[str, str], dict[str, list[str]]] = field(default_factory=dict)
    index: ElectionIndex | None = None

    def entries(self, level: str, area: str) -> list[tuple[str, str]]:
        """(id, name) of what an area's votes count: the candidates, or with races, the area's
        race's candidates (their party named) or, above races, the parties."""
        if self.index is None or self.election.races is None:
            return [(c.id, c.name) for c in self.election.candidates]
        keys, party_of, _ = self.index.view_of(level, area)
        if party_of is not None:
            return [(party, party) for party in keys]
        names = {c.id: f"{c.name} ({c.party})" for race in self.election.races for c in race.candidates}
        return [(key, names[key]) for key in keys]

    @classmethod
    def build(cls, raw: bytes) -> Definition:
        election = Election.model_validate_json(raw)
        children: dict[tuple[str, str], dict[str, dict[str, None]]] = {}

        def add(parent: tuple[str, str], level: str, area: str) -> None:
            children.setdefault(parent, {}).setdefault(level, {})[area] = None

        for entry in election.bureaux:
            region = region_of(entry.department)
            add(("nation", NATION), "department", entry.department)
            if region is not None:
                add(("nation", NATION), "region", region)
                add(("region", region), "department", entry.department)
            add(("department", entry.department), "commune", entry.commune)
            add(("commune", entry.commune), "bureau", entry.bureau)
            if entry.circonscription is not None:
                add(("department", entry.department), "circonscription", entry.circonscription)
                add(("circonscription", entry.circonscription), "bureau", entry.bureau)
        ordered: dict[tuple[str, str], dict[str, list[str]]] = {}
        for parent, levels in children.items():
            ordered[parent] = {}
            for level, areas in levels.items():
                key = _department_order if level == "department" else None
                ordered[parent][level] = sorted(areas, key=key)
        index = ElectionIndex.from_json(raw) if election.races is not None else None
        return cls(election, hashlib.sha1(raw, usedforsecurity=False).hexdigest(), ordered, index)

    def name(self, level: str, area: str) -> str:
        known = self.election.areas.get((level, area))
        if known is not None:
            return known[0]
        if level == "region":
            return REGION_NAMES.get(area, area)
        return OVERSEAS.get(area, area) if level == "department" else area

    def exists(self, level: str, area: str) -> bool:
        return (level, area) in self.election.areas

    def children_of(self, level: str, area: str) -> dict[str, list[str]]:
        found = self.children.get((level, area), {})
        return {child: found[child] for child in CHILD_LEVELS.get(level, ()) if child in found}


def children_of(definition: Definition, level: str, area: str) -> dict[str, list[str]]:
    """The children of an area by level, in display order (the department table's order)."""
    return definition.children_of(level, area)


@dataclass
class Summary:
    """What the election picker shows, without loading a whole roll."""

    election: str
    name: str
    publish_after: str | None


class PageState:
    """The page's Redis client and its cache of parsed definitions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = async_client(settings.redis_dsn())
        self._definitions: dict[str, tuple[float, Definition]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.map_svg = _prepare_map(MAP_FILE.read_text(encoding="utf-8")) if MAP_FILE.exists() else ""
        self.versions = {
            name: _file_version(STATIC_DIR / name)
            for name in ("page.js", "page.css")
            if (STATIC_DIR / name).exists()
        }

    async def close(self) -> None:
        await self.redis.aclose()

    async def definition(self, election_id: str) -> Definition | None:
        cached = self._definitions.get(election_id)
        if cached is not None and time.monotonic() - cached[0] < DEFINITION_TTL:
            return cached[1]
        lock = self._locks.setdefault(election_id, asyncio.Lock())
        async with lock:
            cached = self._definitions.get(election_id)
            if cached is not None and time.monotonic() - cached[0] < DEFINITION_TTL:
                return cached[1]
            found = await self.redis.get(election_key(election_id))
            if found is None:
                self._definitions.pop(election_id, None)
                return None
            raw = found if isinstance(found, bytes) else found.encode()  # bytes: no decode_responses
            digest = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
            if cached is not None and cached[1].digest == digest:
                definition = cached[1]
            else:  # a national roll takes a second to parse: not on the event loop
                definition = await asyncio.get_running_loop().run_in_executor(None, Definition.build, raw)
            self._definitions[election_id] = (time.monotonic(), definition)
            return definition

    async def summaries(self) -> list[Summary]:
        """Every registered election, latest first: read from the head and tail of each definition
        (the definition's JSON starts with its id and name and ends with publish_after and rehearsal)."""
        members = await self.redis.smembers(ELECTIONS)
        ids = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for election_id in ids:
                pipe.getrange(election_key(election_id), 0, 1023)
                pipe.getrange(election_key(election_id), -512, -1)
            answers = await pipe.execute()
        found: list[Summary] = []
        for election_id, head, tail in zip(ids, answers[::2], answers[1::2]):
            if not head:
                continue
            name_match = re.search(rb'"name":("(?:[^"\\]|\\.)*")', head)
            after_match = re.search(rb'"publish_after":("[^"]*"|null)', tail)
            name = orjson.loads(name_match.group(1)) if name_match else election_id
            publish_after = orjson.loads(after_match.group(1)) if after_match else None
            found.append(Summary(election_id, name, publish_after))
        found.sort(key=lambda s: (_timestamp(s.publish_after), s.election), reverse=True)
        return found

    async def standings(self, election: str, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """The standings of these areas that exist, as plain JSON objects (as the API serves them)."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 1000):
            chunk = [results_key(election, level, area) for level, area in keys[start : start + 1000]]
            for raw in await self.redis.mget(chunk):
                if raw is not None:
                    found.append(orjson.loads(raw))
        return found


def _timestamp(iso: str | None) -> float:
    if not iso:
        return 0.0
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def _file_version(path: Path) -> str:
    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()[:10]


def _prepare_map(svg: str) -> str:
    """The departments SVG, inline: ids made unique in the page, each path a link target."""
    svg = re.sub(r"<\?xml[^>]*>", "", svg).strip()
    svg = re.sub(
        r"<svg\b[^>]*>",
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 613 585" class="map-svg" role="img" '
        'aria-labelledby="map-title">',
        svg,
        count=1,
    )
    return re.sub(
        r'<path\s+id="([0-9AB]{2})"\s+aria-label="([^"]*)"',
        lambda m: (
            f'<path id="dep-{m.group(1)}" data-area="{m.group(1)}" class="dept" role="link" tabindex="0" '
            f'aria-label="{m.group(2)}"'
        ),
        svg,
    )


STATE = web.AppKey("page_state", PageState)


def setup(app: web.Application) -> None:
    """Add the page's routes to the service: ``/``, ``/e/{election}/{level}/{area}``, ``/static/``."""
    settings = app[SETTINGS]

    async def start(app: web.Application) -> None:
        app[STATE] = PageState(settings)

    async def stop(app: web.Application) -> None:
        await app[STATE].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/", home)
    app.router.add_get("/e/{election}/{level}/{area}", area_page)
    app.router.add_static("/static/", STATIC_DIR, name="static")


# -- handlers ------------------------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    state = request.app[STATE]
    lang = choose_language(request.query.get("lang"), request.headers.get("Accept-Language"))
    summaries = await state.summaries()
    wanted = request.query.get("election")
    if wanted is None:
        if not summaries:
            return _message_page(lang, UI[lang]["no_election"], status=200)
        wanted = summaries[0].election
    return await _render(request, lang, wanted, "nation", NATION, summaries)


async def area_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    lang = choose_language(request.query.get("lang"), request.headers.get("Accept-Language"))
    summaries = await state.summaries()
    info = request.match_info
    return await _render(request, lang, info["election"], info["level"], info["area"], summaries)


def _message_page(lang: str, message: str, status: int) -> web.Response:
    body = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        f"<title>Soirée</title></head><body><main><p>{html.escape(message)}</p></main></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script>``: no name can close the element or open a comment."""
    text = orjson.dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


#: Levels few enough nationwide (at most a few hundred areas) for a page to follow all of them:
#: an event stream's level filter is national, and a department page must not receive the
#: snapshot and the events of every commune in France.
_FOLLOWED_NATIONWIDE = ("nation", "region", "department", "circonscription")


def _stream_of(level: str, area: str, children: list[str]) -> dict[str, Any]:
    """What a page's event stream asks for: its level and its children's when they are few
    nationwide; a commune or bureau page only its own area (its children's tables are as served)."""
    if level not in _FOLLOWED_NATIONWIDE:
        return {"levels": [level], "area": area}
    return {"levels": [level, *(child for child in children if child in _FOLLOWED_NATIONWIDE)], "area": None}


def _publish_after(election: Election) -> datetime | None:
    return election.publish_after


async def _render(
    request: web.Request, lang: str, election_id: str, level: str, area: str, summaries: list[Summary]
) -> web.Response:
    state = request.app[STATE]
    t = UI[lang]
    definition = await state.definition(election_id)
    if definition is None:
        return _message_page(lang, f"{t['not_found']}: {election_id}", status=404)
    if not definition.exists(level, area):
        return _message_page(lang, f"{t['not_found']}: {level} {area}", status=404)
    election = definition.election
    token = request.query.get("token")
    keep: dict[str, str] = {"lang": lang}
    if token:
        keep["token"] = token
    suffix = "?" + urlencode(keep)
    children = definition.children_of(level, area)
    publish_after = _publish_after(election)
    embargoed = publish_after is not None and datetime.now(UTC) < publish_after
    initial: list[dict[str, Any]] | None = None
    if not embargoed:
        keys = [(level, area)] + [(child, a) for child, areas in children.items() for a in areas]
        initial = await state.standings(election_id, keys)

    entries = definition.entries(level, area)
    colours = {
        key: PALETTE[i] if i < len(PALETTE) else f"hsl({(i * 47) % 360} 55% 45%)"
        for i, (key, _) in enumerate(entries)
    }
    names = dict(entries)
    area_name = definition.name(level, area)
    esc = html.escape

    config = {
        "election": election_id,
        "level": level,
        "area": area,
        "lang": lang,
        "strings": t,
        "candidates": [key for key, _ in entries],
        "names": names,
        "colours": colours,
        "children": {child: areas for child, areas in children.items()},
        "levels": [level, *children],
        "stream": _stream_of(level, area, list(children)),
        "publish_after": publish_after.isoformat() if publish_after else None,
        "embargoed": embargoed,
        "token": token,
        "initial": initial,
        "rehearsal": election.rehearsal,
        "compare_to": election.compare_to,
        "suffix": suffix,
    }

    parts: list[str] = []
    add = parts.append
    title = f"{area_name} — {election.name}" if level != "nation" else election.name
    add(f'<!doctype html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n')
    add('<meta name="viewport" content="width=device-width, initial-scale=1">\n')
    add(f"<title>{esc(title)} · {esc(t['title'])}</title>\n")
    add(f'<link rel="stylesheet" href="/static/page.css?v={state.versions.get("page.css", "")}">\n')
    add('<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">\n')
    add("</head>\n<body>\n")
    if election.rehearsal:
        add(f'<div class="rehearsal" role="note" id="rehearsal">{esc(t["rehearsal"])}</div>\n')
    add('<header class="top">\n')
    add(f'<p class="election-name"><a href="/?{urlencode({"election": election_id, **keep})}">')
    add(f"{esc(election.name)}</a></p>\n")
    add(f'<h1 id="area-name">{esc(area_name)}</h1>\n')
    add(_breadcrumbs(definition, level, area, suffix, t))
    add('<nav class="tools">')
    other = "en" if lang == "fr" else "fr"
    switch = {k: v for k, v in request.query.items() if k != "lang"}
    switch["lang"] = other
    add(
        f'<a class="lang" hreflang="{other}" lang="{other}" '
        f'href="{esc(request.path)}?{esc(urlencode(switch))}">'
    )
    add(f"{esc(t['language'])}</a>")
    others = [s for s in summaries if s.election != election_id]
    if others:
        add(f'<details class="picker"><summary>{esc(t["elections"])}</summary><ul>')
        for s in others:
            href = "/?" + urlencode({"election": s.election, **keep})
            add(f'<li><a href="{esc(href)}">{esc(s.name)}</a></li>')
        add("</ul></details>")
    add("</nav>\n</header>\n")

    hidden = "" if embargoed else " hidden"
    embargo_text = ""
    if publish_after is not None:
        embargo_text = t["embargo"].format(time=publish_after.strftime("%H:%M"))
    add(f'<div id="embargo" class="embargo" role="status"{hidden}>')
    add(f'<p class="embargo-time" id="embargo-time">{esc(embargo_text)}</p>')
    add(f'<p class="embargo-detail">{esc(t["embargo_detail"])}</p></div>\n')

    add(f'<main id="results" class="results{" is-embargoed" if embargoed else ""}">\n')
    by_party = definition.index is not None and definition.index.view_of(level, area)[1] is not None
    add(_figures(entries, t, esc, colours, t["party"] if by_party else t["candidate"]))
    if level == "nation":
        add(_map_section(state.map_svg, definition, t, esc, colours, children.get("department", [])))
    for child, areas in children.items():
        add(_child_table(definition, child, areas, t, esc, election_id, suffix))
    add('<section class="events" aria-labelledby="events-title">')
    add(f'<h2 id="events-title">{esc(t["events"])}</h2>')
    add(f'<ol id="events" aria-live="polite"><li class="empty">{esc(t["no_events"])}</li></ol></section>\n')
    add("</main>\n")
    add('<footer class="bottom"><p class="credit">')
    add(f'{esc(t["map_credit"])} <a href="{LICENCE_URL}" rel="license">CC BY 4.0</a>')
    add(' (<a href="/static/MAP-CREDIT.md">svg-maps</a>). Soirée.</p>')
    add('<p id="connection" class="connection" hidden></p></footer>\n')
    add(f'<script type="application/json" id="soiree-config">{_script_json(config)}</script>\n')
    add(f'<script src="/static/page.js?v={state.versions.get("page.js", "")}"></script>\n')
    add("</body>\n</html>\n")
    return web.Response(text="".join(parts), content_type="text/html", charset="utf-8")


def _breadcrumbs(definition: Definition, level: str, area: str, suffix: str, t: dict[str, str]) -> str:
    election = definition.election
    trail: list[tuple[str, str]] = []
    current: tuple[str, str] | None = (level, area)
    while current is not None:
        trail.append(current)
        if current[0] == "circonscription":
            current = ("department", current[1].rsplit("-", 1)[0])
        elif current[0] == "region":
            current = ("nation", NATION)
        else:
            try:
                current = election.parent_of(*current)
            except KeyError:
                current = None
    if len(trail) < 2:
        return ""
    items = []
    for lvl, a in reversed(trail[1:]):
        href = f"/e/{election.election}/{lvl}/{a}{suffix}"
        items.append(f'<li><a href="{html.escape(href)}">{html.escape(definition.name(lvl, a))}</a></li>')
    return (
        f'<nav class="crumbs" aria-label="{html.escape(t["breadcrumb"])}"><ol>{"".join(items)}</ol></nav>\n'
    )


def _figures(
    entries: list[tuple[str, str]], t: dict[str, str], esc: Any, colours: dict[str, str], heading: str
) -> str:
    rows = []
    for key, name in entries:
        rows.append(
            f'<tr data-candidate="{esc(key)}"><th scope="row"><span class="swatch" '
            f'style="background:{colours[key]}" aria-hidden="true"></span>{esc(name)}</th>'
            '<td class="num votes">—</td><td class="num share">—</td>'
            '<td class="bar-cell"><span class="bar"><span class="bar-fill" '
            f'style="background:{colours[key]};width:0%"></span></span></td>'
            '<td class="num change"></td></tr>'
        )
    summary = "".join(
        f'<div><dt>{esc(t[key])}</dt><dd id="f-{key}">—</dd></div>'
        for key in ("turnout", "registered", "voters", "blank", "invalid", "expressed")
    )
    return (
        '<section class="figures" aria-labelledby="area-name" id="figures">\n'
        '<p id="call" class="call"></p>\n'
        '<div class="progress"><span id="f-reporting-label">'
        f'{esc(t["reporting"])}</span> <strong id="f-reporting">—</strong>'
        '<span class="meter" aria-hidden="true"><span id="f-reporting-bar" style="width:0%"></span></span>'
        "</div>\n"
        f'<p id="f-as-of" class="as-of">{esc(t["no_results"])}</p>\n'
        f'<table class="candidates" id="candidates"><thead><tr><th scope="col">{esc(heading)}</th>'
        f'<th scope="col" class="num">{esc(t["votes"])}</th>'
        f'<th scope="col" class="num">{esc(t["share"])}</th>'
        f'<th scope="col" class="bar-cell"><span class="sr-only">{esc(t["share"])}</span></th>'
        f'<th scope="col" class="num change">{esc(t["change"])}</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>\n"
        f'<dl class="summary">{summary}</dl>\n'
        '<p id="reference" class="reference" hidden></p>\n'
        "</section>\n"
    )


def _map_section(
    svg: str,
    definition: Definition,
    t: dict[str, str],
    esc: Any,
    colours: dict[str, str],
    departments: list[str],
) -> str:
    names = dict(definition.entries("nation", NATION))
    legend = "".join(
        f'<li><span class="swatch" style="background:{colours[c]}" aria-hidden="true"></span>'
        f"{esc(names[c])}</li>"
        for c in colours
    )
    legend += f'<li><span class="swatch none" aria-hidden="true"></span>{esc(t["no_result_legend"])}</li>'
    legend += f'<li><span class="swatch tie" aria-hidden="true"></span>{esc(t["tie_legend"])}</li>'
    overseas_codes = [d for d in OVERSEAS if d in departments]
    tiles = "".join(
        f'<li><a class="tile" data-area="{esc(code)}" '
        f'href="/e/{esc(definition.election.election)}/department/'
        f'{esc(code)}"><span class="swatch tile-colour" aria-hidden="true"></span>'
        f'<span class="tile-name">{esc(definition.name("department", code))}</span>'
        f'<span class="tile-leader"></span></a></li>'
        for code in overseas_codes
    )
    return (
        '<section class="mapbox" aria-labelledby="map-title">\n'
        f'<h2 id="map-title" class="sr-only">{esc(t["map"])}</h2>\n'
        f'<figure class="map">{svg}<figcaption>{esc(t["map_credit"])} '
        f'<a href="{LICENCE_URL}" rel="license">CC BY 4.0</a></figcaption></figure>\n'
        '<div class="beside">'
        + (f'<h3>{esc(t["overseas"])}</h3><ul class="overseas">{tiles}</ul>' if tiles else "")
        + f'<h3>{esc(t["legend"])}</h3><ul class="legend">{legend}</ul></div>\n'
        "</section>\n"
    )


def _child_table(
    definition: Definition,
    level: str,
    areas: list[str],
    t: dict[str, str],
    esc: Any,
    election_id: str,
    suffix: str,
) -> str:
    title = t[CHILD_TITLE[level]]
    rows = []
    for a in areas:
        href = f"/e/{election_id}/{level}/{a}{suffix}"
        name = definition.name(level, a)
        rows.append(
            f'<tr data-area="{esc(a)}" data-name="{esc(name.lower())}">'
            f'<th scope="row" data-sort="{esc(a)}"><a href="{esc(href)}">{esc(name)}</a>'
            f"{'' if level in ('bureau', 'commune') else f' <span class=code>{esc(a)}</span>'}</th>"
            '<td class="leader" data-sort="">—</td><td class="num lshare" data-sort="-1">—</td>'
            '<td class="num turnout" data-sort="-1">—</td><td class="num reported" data-sort="-1">—</td></tr>'
        )
    columns = [
        ("area", ""),
        ("leader", ""),
        ("leader_share", "num"),
        ("turnout", "num"),
        ("reporting", "num"),
    ]
    heads = "".join(
        f'<th scope="col" class="{cls}" aria-sort="none"><button type="button" data-col="{i}" '
        f'title="{esc(t["sort"])}">{esc(t[key])}</button></th>'
        for i, (key, cls) in enumerate(columns)
    )
    many = len(areas) > 30
    limit = ' data-limit="50"' if many else ""
    filter_box = (
        f'<p class="filter"><label>{esc(t["filter"])} <input type="search" data-filter="{level}"></label> '
        f'<span class="count" data-count="{level}"></span> '
        f'<button type="button" class="show-all" data-show-all="{level}">'
        f"{esc(t['show_all'].format(n=len(areas)))}"
        "</button></p>"
        if many
        else ""
    )
    return (
        f'<section class="children" aria-labelledby="t-{level}">\n'
        f'<h2 id="t-{level}">{esc(title)}</h2>\n{filter_box}'
        f'<div class="scroll"><table class="areas sortable" id="table-{level}" data-level="{level}"'
        f"{limit}>"
        f"<thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>\n</section>\n"
    )
