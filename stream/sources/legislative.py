"""A generated night of the French législatives (round 1 or 2) on any roll whose bureaux carry a
circonscription.

``legislative_scenario(roll, "leg2017-t1")`` turns the roll (say the presidential 2017 roll that
``stream.sources.ministry.election_from_ministry`` reads: 69,242 bureaux in 577 circonscriptions) into
an election with one race per circonscription and a night of reports, deterministically for a seed:

* candidates: invented French names, 5 to 17 per circonscription in round 1 (13.7 on average in
  2017), each with a nuance of the ministry's 2017 list; the parties that stand everywhere (REM or
  MoDem, LR or UDI, FN, FI, PCF, PS or PRG, DLF) field at most one candidate per circonscription,
  the others (ecologists, divers, far left and right, regionalists) sometimes several; ids are
  ``<circonscription>-<panneau>`` (``42-01-03``), the order of the panels drawn at random;
* votes: each party's national share of the 2017 first round (``ROUND_1_SHARES``), its strength
  varying by department (known strongholds: the FN in the north-east and along the Mediterranean,
  regionalists in Corsica and Brittany, divers gauche and droite overseas…), by circonscription and by
  bureau; turnout 48.70 % nationally in round 1 and 42.64 % in round 2 (exactly, to the voter), far
  lower overseas and abroad; blank and invalid ballots as in 2017 (1.54 % and 0.67 % of voters in
  round 1, 6.99 % and 2.87 % in round 2, when many had no candidate left);
* round 2 follows round 1 of the same seed: a circonscription whose round 1 elected a deputy
  (over 50 % of expressed votes and at least 25 % of registered voters) has no second round, so its
  bureaux are left out; elsewhere the candidates with at least 12.5 % of registered voters (the
  first two if fewer reach it) stand, keeping their round-1 ids, less a few who withdraw; round-1
  votes move to the finalists by political affinity;
* the night: every bureau reports once, ``report_delay`` after polls close (big cities later), and
  a few first reports are wrong and corrected (seq 2) 20 to 70 minutes later, as in the seed night.

``Scenario.facts`` holds the national figures of the final counts (registered, voters, blank,
invalid, expressed, turnout, votes and shares by party), the intended shares, and each race's
outcome under the rules: who is elected, who qualifies for round 2, the seats by party.

Nothing here reads files: the roll is passed in. Pure Python; the 69,242-bureau roll takes a few
seconds.
"""

from __future__ import annotations

import gc
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from stream.domain.messages import BureauResult, Election, RollEntry
from stream.sources.scenario import Scenario, TimedResult, report_delay

__all__ = [
    "BLOCS",
    "LEGISLATIVE_POLLS_CLOSE",
    "MAJOR_PARTIES",
    "PARTIES",
    "ROUND_1_SHARES",
    "legislative_scenario",
]

_CEST = timezone(timedelta(hours=2))
#: When the polls closed in the big cities (the last ones), 11 and 18 June 2017.
LEGISLATIVE_POLLS_CLOSE: dict[int, datetime] = {
    1: datetime(2017, 6, 11, 20, 0, tzinfo=_CEST),
    2: datetime(2017, 6, 18, 20, 0, tzinfo=_CEST),
}

#: The ministry's nuances of 2017 and their names.
PARTIES: dict[str, str] = {
    "EXG": "Extrême gauche",
    "COM": "Parti communiste français",
    "FI": "La France insoumise",
    "SOC": "Parti socialiste",
    "RDG": "Parti radical de gauche",
    "DVG": "Divers gauche",
    "ECO": "Écologiste",
    "DIV": "Divers",
    "REG": "Régionaliste",
    "REM": "La République en marche",
    "MDM": "Mouvement démocrate",
    "UDI": "Union des démocrates et indépendants",
    "LR": "Les Républicains",
    "DVD": "Divers droite",
    "DLF": "Debout la France",
    "FN": "Front national",
    "EXD": "Extrême droite",
}
#: Parties with at most one candidate per circonscription (the others may field several).
MAJOR_PARTIES = frozenset({"REM", "MDM", "LR", "UDI", "FN", "FI", "SOC", "RDG", "COM", "DLF"})
#: National shares of expressed votes in round 1, 11 June 2017 (ministry, in %): what the
#: generator aims at.
ROUND_1_SHARES: dict[str, float] = {
    "REM": 28.21,
    "LR": 15.77,
    "FN": 13.20,
    "FI": 11.03,
    "SOC": 7.44,
    "ECO": 4.30,
    "MDM": 4.12,
    "UDI": 3.03,
    "DVD": 2.76,
    "COM": 2.72,
    "DIV": 2.21,
    "DVG": 1.60,
    "DLF": 1.17,
    "REG": 0.90,
    "EXG": 0.77,
    "RDG": 0.47,
    "EXD": 0.30,
}
#: The political family of each party: how round-1 votes move in round 2.
BLOCS: dict[str, str] = {
    "EXG": "left",
    "COM": "left",
    "FI": "left",
    "SOC": "left",
    "RDG": "left",
    "DVG": "left",
    "ECO": "left",
    "REM": "centre",
    "MDM": "centre",
    "UDI": "right",
    "LR": "right",
    "DVD": "right",
    "DLF": "sovereignist",
    "FN": "far right",
    "EXD": "far right",
    "DIV": "other",
    "REG": "other",
}
#: Of a round-1 vote for a party of family A, how much goes to a finalist of family B in round 2
#: (relative weights; the rest is the abstention and blank votes that the round-2 figures carry).
_TRANSFER: dict[str, dict[str, float]] = {
    "left": {"left": 0.85, "centre": 0.28, "right": 0.12, "sovereignist": 0.10, "far right": 0.08},
    "centre": {"left": 0.30, "centre": 0.95, "right": 0.45, "sovereignist": 0.15, "far right": 0.05},
    "right": {"left": 0.08, "centre": 0.45, "right": 0.90, "sovereignist": 0.40, "far right": 0.25},
    "sovereignist": {"left": 0.10, "centre": 0.15, "right": 0.40, "sovereignist": 0.9, "far right": 0.40},
    "far right": {"left": 0.10, "centre": 0.08, "right": 0.35, "sovereignist": 0.5, "far right": 0.95},
    "other": {"left": 0.30, "centre": 0.35, "right": 0.30, "sovereignist": 0.2, "far right": 0.15},
}
_OTHER_TRANSFER = 0.6  # to a finalist of the "other" family (a regionalist in Corsica)

# 2017's national figures that the night reproduces exactly (turnout) or on average (ballots).
_TURNOUT = {1: 0.4870, 2: 0.4264}
_BLANK = {1: 0.0154, 2: 0.0699}  # of voters
_INVALID = {1: 0.0067, 2: 0.0287}

#: How much a party's strength varies between departments and between circonscriptions
#: (lognormal sigmas): the PS kept a few strong incumbents, the REM wave was even.
_DEPARTMENT_SPREAD: dict[str, float] = {"REM": 0.08, "MDM": 0.10}
_DEPARTMENT_SPREAD_OTHERS = 0.18
_SPREAD: dict[str, float] = {
    "REM": 0.12,
    "MDM": 0.25,
    "LR": 0.40,
    "UDI": 0.50,
    "FN": 0.30,
    "FI": 0.28,
    "SOC": 0.65,
    "RDG": 0.60,
    "COM": 0.55,
    "ECO": 0.45,
    "DLF": 0.40,
    "DVD": 0.80,
    "DVG": 0.80,
    "DIV": 0.70,
    "EXG": 0.30,
    "EXD": 0.60,
    "REG": 0.60,
}
#: Between the bureaux of a circonscription: town against country. A bureau's axis u ~ N(0, 0.25)
#: multiplies a candidate's strength by exp(k * u), over its mean exp(k² * 0.25² / 2).
_URBAN_SPREAD = 0.25
_URBAN: dict[str, float] = {"FN": -0.9, "EXD": -0.5, "DLF": -0.3, "LR": -0.2, "REM": 0.3, "FI": 0.8}
_URBAN |= {"COM": 0.5, "ECO": 0.7, "SOC": 0.2}
_BUREAU_NOISE = 0.18

_OVERSEAS = frozenset({"ZA", "ZB", "ZC", "ZD", "ZM", "ZN", "ZP", "ZS", "ZW", "ZX"})
_ABROAD = "ZZ"


def _places(codes: str, factor: float) -> dict[str, float]:
    return dict.fromkeys(codes.split(), factor)


#: Known strongholds and deserts, per party: department -> factor on its strength.
_LOCAL: dict[str, dict[str, float]] = {
    "FN": _places("02 08 10 11 13 30 34 52 55 57 59 60 62 66 70 80 83 84 88 89 90 06 51 27 76", 1.4)
    | _places("75 92 35 29 22 44 69 31 64 74 94 93 78 ZN ZP ZS ZW ZX", 0.6)
    | _places("ZA ZB ZC ZD", 0.45)
    | {_ABROAD: 0.35},
    "REM": _places("75 92 69 35 44 29 74 78 31 33 38 67 56 22", 1.08) | {_ABROAD: 1.7},
    "LR": _places("06 78 85 74 15 43 12 48 50 51 49 53 61 92 83 2A", 1.3) | _places("93 94 13 09 ZZ", 0.7),
    "FI": _places("93 94 13 09 11 31 34 23 87 30 66 ZD", 1.25) | _places("85 74 ZZ", 0.6),
    "COM": _places("93 94 76 59 62 03 18 19 13 42", 1.5) | _places("ZD", 2.5),
    "SOC": _places("09 11 19 23 87 40 32 82 81 58 70 71 ZA ZB", 1.5),
    "ECO": _places("75 35 38 67 69 44 29", 1.3),
    "DLF": _places("91", 2.5),
    "UDI": _places("51 59 88 55", 1.4),
    "MDM": _places("64 40 89", 1.5),
    "REG": _places("2A 2B", 30.0)
    | _places("29 22 56 35 44", 4.0)
    | _places("67 68 64 66", 3.5)
    | _places("ZA ZB ZC ZD ZM ZN ZP ZS ZW ZX", 6.0),
    "DVG": _places("ZA ZB ZC ZD ZM ZN ZP ZS ZW ZX", 5.0),
    "DVD": _places("ZA ZB ZC ZD ZM ZN ZP ZS ZW ZX", 5.0),
}
#: Where regionalists nearly always stand.
_REGIONAL = frozenset({"2A", "2B", "29", "22", "56", "35", "67", "68", "64", "66"} | _OVERSEAS)

_MIN_CANDIDATES, _MAX_CANDIDATES = 5, 17
#: Who goes first when a ballot paper has too many names: divers first, the parties last.
_TRIM_ORDER = ("DIV", "EXD", "ECO", "DVD", "DVG", "EXG", "REG")
#: A second ecologist or divers gauche in a circonscription is usually a smaller list than the first.
_SECOND_OF_PARTY = 0.35
#: A few hard-fought circonscriptions, where turnout is higher and three candidates are level
#: (each near ``_THREE_WAY_SHARE`` of expressed votes, so all three may reach 12.5 % of registered).
_THREE_WAY = 0.016
_THREE_WAY_TURNOUT = 1.12
_THREE_WAY_SHARE = 0.27
#: Round 2: chance that a third qualified candidate stands (the others withdraw), that the second
#: withdraws too (a single candidate).
_TRIANGULAIRE_STAYS = 0.6
_SECOND_WITHDRAWS = 0.012

_MALE = (
    "Jean Pierre Philippe Michel Alain Patrick Nicolas Christophe François Laurent Stéphane Éric "
    "Frédéric Olivier Thierry Pascal Sébastien David Julien Bruno Didier Vincent Dominique Gilles "
    "Jérôme Christian Daniel Bernard Thomas Guillaume Alexandre Antoine Mathieu Benoît Arnaud Damien "
    "Cédric Fabrice Hervé Yves Jacques Marc Luc Sylvain Emmanuel Xavier Romain Maxime Jean-Pierre "
    "Jean-Luc Jean-François Jean-Michel Jean-Marc Pierre-Yves Gérard Serge Denis Hugues Loïc Yannick "
    "Karim Mohamed Rachid Mehdi Bastien Florian Kevin Anthony Raphaël Régis Joël Gaël"
).split()
_FEMALE = (
    "Marie Nathalie Isabelle Sylvie Catherine Valérie Christine Sandrine Véronique Stéphanie Céline "
    "Sophie Anne Françoise Martine Brigitte Nicole Monique Patricia Corinne Laurence Caroline Virginie "
    "Aurélie Émilie Julie Élodie Audrey Laure Claire Hélène Agnès Delphine Karine Florence Muriel "
    "Pascale Cécile Marie-Christine Anne-Marie Marie-Hélène Danielle Josiane Chantal Béatrice "
    "Élisabeth Mathilde Charlotte Camille Pauline Amélie Fatima Nadia Samia Laetitia Sarah Manon "
    "Clémence Ségolène Géraldine Maud Annie Mireille"
).split()
_SURNAMES = (
    "Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel Lefebvre "
    "Leroy Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent "
    "Muller Lefèvre Faure André Mercier Blanc Guérin Boyer Garnier Chevalier François Legrand Gauthier "
    "Garcia Perrin Robin Clément Morin Nicolas Henry Roussel Mathieu Gautier Masson Marchand Duval "
    "Denis Dumont Marie Lemaire Noël Meyer Dufour Meunier Brun Blanchard Giraud Joly Rivière Lucas "
    "Brunet Gaillard Barbier Arnaud Martinez Gérard Roche Renard Schmitt Roy Leroux Colin Vidal Caron "
    "Picard Roger Fabre Aubert Lemoine Renaud Dumas Lacroix Olivier Philippe Bourgeois Pierre Benoît "
    "Rey Leclerc Payet Rolland Leclercq Guillaume Lecomte Lopez Jean Dupuy Guillot Hubert Berger "
    "Carpentier Sanchez Dupuis Moulin Louis Deschamps Huet Vasseur Perez Boucher Fleury Royer Klein "
    "Jacquet Adam Paris Poirier Marty Aubry Guyot Carré Charles Renault Charpentier Ménard Maillard "
    "Baron Bertin Bailly Hervé Schneider Fernandez Collet Léger Bouvier Julien Prévost Millet Perrot "
    "Daniel Cousin Germain Breton Besson Langlois Rémy Pelletier Lévêque Perrier Leblanc Barré Lebrun "
    "Marchal Weber Mallet Boulanger Jacob Monnier Michaud Rodriguez Guichard Gillet Étienne Grondin "
    "Poulain Tessier Chevallier Collin Chauvin Bouchet Gay Lemaître Bénard Maréchal Humbert Reynaud "
    "Antoine Hoarau Perret Barthélemy Cordier Pichon Lejeune Gilbert Lamy Delaunay Pasquier Carlier "
    "Laporte Delmas Vial Ferrand Brunel Lacombe Tournier Bousquet Castel Pons Chabert Santini Ferrari "
    "Casanova Etcheverry Lagarde Courtois Benali Haddad Mansouri Diallo Nguyen Ribeiro Ferreira "
    "Kerjean Quéré Moulinier Lebreton Tanguy Riou Jaouen Marchetti Luciani Pietri Zimmermann Hoffmann"
).split() + ["Le Gall", "Le Roux", "Le Goff", "Da Silva", "Dos Santos", "de La Roche", "Saint-Martin"]
_WOMEN = 0.42  # of the candidates of 2017


# --------------------------------------------------------------------------------------------
# integers that add up


def _split(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` in integers proportional to ``weights`` (largest remainder; ties to the first)."""
    n = len(weights)
    weight = math.fsum(weights)
    if total <= 0:
        return [0] * n
    if weight <= 0:
        weights, weight = [1.0] * n, float(n)
    quotas = [w * total / weight for w in weights]
    counts = [int(q) for q in quotas]
    left = total - sum(counts)
    if left:
        # Largest fractions first; float rounding may (rarely) leave more than n, or too many.
        fraction = [c - q for c, q in zip(counts, quotas)]
        order = sorted(range(n), key=fraction.__getitem__)
        step = 0
        while left > 0:
            counts[order[step % n]] += 1
            left, step = left - 1, step + 1
        while left < 0:
            k = order[n - 1 - step % n]
            if counts[k] > 0:
                counts[k] -= 1
                left += 1
            step += 1
    return counts


def _apportion(total: int, weights: Sequence[float], caps: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights``, none above its cap (largest
    remainder, after giving their caps to those whose share would exceed them)."""
    result = [0] * len(weights)
    free = [i for i, w in enumerate(weights) if w > 0 and caps[i] > 0]
    if total > sum(caps[i] for i in free):
        raise ValueError(f"cannot place {total} within caps summing to {sum(caps[i] for i in free)}")
    remaining = total
    while free and remaining > 0:
        scale = remaining / math.fsum(weights[i] for i in free)
        over = [i for i in free if weights[i] * scale > caps[i]]
        if over:
            for i in over:
                result[i] = caps[i]
                remaining -= caps[i]
            capped = set(over)
            free = [i for i in free if i not in capped]
            continue
        for i, n in zip(free, _split(remaining, [weights[i] for i in free])):
            result[i] = n
        break
    return result


# --------------------------------------------------------------------------------------------
# the plan: races, candidates, strengths


@dataclass
class _Race:
    race: str
    name: str
    department: str
    rows: list[int]  # indices into the generated roll
    registered: int = 0
    turnout: float = 1.0  # factor on the national turnout
    ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    parties: list[str] = field(default_factory=list)
    strength: list[float] = field(default_factory=list)  # before the party multipliers
    three_way: bool = False  # a hard-fought circonscription where three candidates are level


def _count(rng: random.Random, table: Sequence[tuple[int, float]]) -> int:
    """A number drawn from ``(value, probability)`` pairs."""
    return rng.choices([v for v, _ in table], [p for _, p in table])[0]


def _parties(rng: random.Random, department: str) -> list[str]:
    """Who stands in one circonscription (nuances, one entry per candidate), before the panels are drawn."""
    overseas = department in _OVERSEAS
    stands: list[str] = []
    draw = rng.random()  # the presidential majority: REM, or MoDem under the agreement, or nobody
    if draw < 0.80:
        stands.append("REM")
    elif draw < 0.93:
        stands.append("MDM")
    draw = rng.random()  # the right: LR, or UDI under the agreement, or a dissident
    if draw < 0.80:
        stands.append("LR")
        if rng.random() < 0.08:
            stands.append("UDI")
    elif draw < 0.96:
        stands.append("UDI")
    for party, chance in (("FN", 0.99), ("FI", 0.96), ("COM", 0.80), ("DLF", 0.86)):
        if rng.random() < chance * (0.7 if overseas else 1.0):
            stands.append(party)
    draw = rng.random()
    if draw < 0.72:
        stands.append("SOC")
    elif draw < 0.80:
        stands.append("RDG")
    stands += ["EXG"] * _count(rng, ((0, 0.04), (1, 0.84), (2, 0.12)))
    stands += ["ECO"] * _count(rng, ((0, 0.05), (1, 0.50), (2, 0.32), (3, 0.13)))
    stands += ["DIV"] * _count(rng, ((0, 0.06), (1, 0.18), (2, 0.26), (3, 0.24), (4, 0.16), (5, 0.10)))
    stands += ["DVD"] * _count(
        rng, ((0, 0.50), (1, 0.40), (2, 0.10)) if not overseas else ((1, 0.5), (2, 0.5))
    )
    stands += ["DVG"] * _count(
        rng, ((0, 0.58), (1, 0.34), (2, 0.08)) if not overseas else ((1, 0.5), (2, 0.5))
    )
    stands += ["EXD"] * _count(rng, ((0, 0.55), (1, 0.45)))
    if rng.random() < (0.9 if department in _REGIONAL else 0.04):
        stands.append("REG")
    for party in _TRIM_ORDER:
        while len(stands) > _MAX_CANDIDATES and party in stands:
            stands.remove(party)
    while len(stands) < _MIN_CANDIDATES:
        stands.append("DIV")
    return stands


def _name(rng: random.Random, taken: set[str]) -> str:
    while True:
        first = rng.choice(_FEMALE if rng.random() < _WOMEN else _MALE)
        name = f"{first} {rng.choice(_SURNAMES)}"
        if name not in taken:
            taken.add(name)
            return name


def _plan(rng: random.Random, roll: Election) -> tuple[list[RollEntry], list[_Race]]:
    """The roll of the circonscriptions (bureaux in roll order, each in its race), and its races
    with their candidates, strengths and turnout factors; races in id order."""
    bureaux: list[RollEntry] = []
    by_race: dict[str, _Race] = {}
    for entry in roll.bureaux:
        if entry.circonscription is None:
            continue
        race = by_race.get(entry.circonscription)
        if race is None:
            race = by_race[entry.circonscription] = _Race(
                entry.circonscription,
                entry.circonscription_name or entry.circonscription,
                entry.department,
                [],
            )
        race.rows.append(len(bureaux))
        race.registered += entry.registered
        bureaux.append(entry.model_copy(update={"race": entry.circonscription}))
    if not bureaux:
        raise ValueError(f"election {roll.election}: no bureau has a circonscription")
    races = [by_race[key] for key in sorted(by_race)]

    department_turnout: dict[str, float] = {}
    department_party: dict[str, dict[str, float]] = {}
    for race in races:
        department = race.department
        if department not in department_turnout:
            place = 0.42 if department == _ABROAD else 0.62 if department in _OVERSEAS else 1.0
            department_turnout[department] = place * rng.lognormvariate(0, 0.06)
            department_party[department] = {
                party: _LOCAL.get(party, {}).get(department, 1.0)
                * rng.lognormvariate(0, _DEPARTMENT_SPREAD.get(party, _DEPARTMENT_SPREAD_OTHERS))
                for party in PARTIES
            }
        race.turnout = department_turnout[department] * rng.lognormvariate(0, 0.05)
        if department not in _OVERSEAS and department != _ABROAD and rng.random() < _THREE_WAY:
            race.three_way = True
            race.turnout *= _THREE_WAY_TURNOUT
        stands = _parties(rng, department)
        rng.shuffle(stands)  # the panels are drawn by lot
        taken: set[str] = set()
        seen: Counter[str] = Counter()
        for panel, party in enumerate(stands, start=1):
            race.ids.append(f"{race.race}-{panel:02d}")
            race.names.append(_name(rng, taken))
            race.parties.append(party)
            seen[party] += 1
            lesser = _SECOND_OF_PARTY if seen[party] > 1 else 1.0
            race.strength.append(
                department_party[department][party] * lesser * rng.lognormvariate(0, _SPREAD[party])
            )
    return bureaux, races


def _calibrate(races: list[_Race]) -> dict[str, float]:
    """Party multipliers that make the expected national shares the 2017 ones (``ROUND_1_SHARES``):
    expected expressed votes per circonscription, shared by strength, summed by party, scaled."""
    total = math.fsum(ROUND_1_SHARES.values())
    target = {party: share / total for party, share in ROUND_1_SHARES.items()}
    multiplier = dict.fromkeys(PARTIES, 1.0)
    weight = [race.registered * race.turnout for race in races]
    for _ in range(60):
        votes = dict.fromkeys(PARTIES, 0.0)
        for race, expressed in zip(races, weight):
            strengths = [multiplier[p] * s for p, s in zip(race.parties, race.strength)]
            scale = expressed / math.fsum(strengths)
            for party, s in zip(race.parties, strengths):
                votes[party] += s * scale
        national = math.fsum(votes.values())
        for party, v in votes.items():
            if v > 0:
                multiplier[party] *= target[party] / (v / national)
    return multiplier


# --------------------------------------------------------------------------------------------
# the counts


@dataclass
class _Counts:
    """Every bureau's count of one round, in the order of the generated roll."""

    voters: list[int]
    blank: list[int]
    invalid: list[int]
    votes: list[list[int]]  # aligned with the bureau's race's candidates of that round


def _ballots(
    rng: random.Random,
    registered: list[int],
    turnout: list[float],
    round_: int,
    spoil: list[float],
) -> tuple[list[int], list[int], list[int]]:
    """Voters, blank and invalid ballots per bureau: near ``turnout`` and ``spoil`` (factors on the
    round's rates), the national turnout exactly the round's, blank and invalid ballots to the ballot."""
    roll_total = sum(registered)
    voters = _apportion(
        round(_TURNOUT[round_] * roll_total),
        [r * t for r, t in zip(registered, turnout)],
        [r * 95 // 100 if r >= 20 else r for r in registered],
    )
    voters_total = sum(voters)
    blank_weight = [v * s * math.exp(rng.gauss(0, 0.35)) for v, s in zip(voters, spoil)]
    blank = _apportion(round(_BLANK[round_] * voters_total), blank_weight, voters)
    invalid = _apportion(
        round(_INVALID[round_] * voters_total),
        [v * math.exp(rng.gauss(0, 0.4)) for v in voters],
        [v - b for v, b in zip(voters, blank)],
    )
    return voters, blank, invalid


def _round_one(rng: random.Random, registered: list[int], races: list[_Race]) -> _Counts:
    multiplier = _calibrate(races)
    turnout = [0.0] * len(registered)
    for race in races:
        for i in race.rows:
            turnout[i] = min(0.92, race.turnout * math.exp(rng.gauss(0, 0.08)))
    voters, blank, invalid = _ballots(rng, registered, turnout, 1, [1.0] * len(registered))
    expressed = [v - b - n for v, b, n in zip(voters, blank, invalid)]
    shares: list[list[float]] = [[] for _ in registered]
    gauss, uniform, exp = rng.gauss, rng.random, math.exp
    # Each candidate's bureau noise: log-uniform (as spread as the lognormal of _BUREAU_NOISE, and
    # much faster to draw than a million Gaussians).
    width = _BUREAU_NOISE * math.sqrt(12)
    for race in races:
        base = [multiplier[p] * s for p, s in zip(race.parties, race.strength)]
        if race.three_way:
            _level_three(base)
        urban = [_URBAN.get(p, 0.0) for p in race.parties]
        base = [b / exp(k * k * _URBAN_SPREAD**2 / 2) for b, k in zip(base, urban)]
        for i in race.rows:
            u = gauss(0, _URBAN_SPREAD)
            weights = [b * exp(k * u + width * (uniform() - 0.5)) for b, k in zip(base, urban)]
            total = math.fsum(weights)
            shares[i] = [w / total for w in weights]
    # Bureau noise shrinks the big shares a little (a share's own noise is in its denominator):
    # scale each party's shares so that the expected national shares are the targets again.
    factor = _factors(races, shares, expressed)
    votes: list[list[int]] = [[] for _ in registered]
    for race in races:
        scale = [factor[p] for p in race.parties]
        for i in race.rows:
            votes[i] = _split(expressed[i], [s * f for s, f in zip(shares[i], scale)])
    return _Counts(voters, blank, invalid, votes)


def _factors(races: list[_Race], shares: list[list[float]], expressed: list[int]) -> dict[str, float]:
    """Per party: its target share over its expected national share."""
    votes = dict.fromkeys(PARTIES, 0.0)
    for race in races:
        sums = [0.0] * len(race.parties)
        for i in race.rows:
            e = expressed[i]
            for k, s in enumerate(shares[i]):
                sums[k] += e * s
        for party, v in zip(race.parties, sums):
            votes[party] += v
    national = math.fsum(votes.values())
    target = math.fsum(ROUND_1_SHARES.values())
    return {p: ROUND_1_SHARES[p] / target / (v / national) if v > 0 else 1.0 for p, v in votes.items()}


def _level_three(base: list[float]) -> None:
    """The first three strengths made level, each ``_THREE_WAY_SHARE`` of the whole."""
    top = sorted(range(len(base)), key=lambda k: -base[k])[:3]
    others = math.fsum(b for k, b in enumerate(base) if k not in top)
    level = _THREE_WAY_SHARE * others / (1 - 3 * _THREE_WAY_SHARE)
    for k in top:
        base[k] = level


def _totals(race: _Race, counts: _Counts) -> tuple[list[int], int]:
    """A race's votes per candidate and its expressed votes."""
    totals = [0] * len(race.ids)
    for i in race.rows:
        for k, n in enumerate(counts.votes[i]):
            totals[k] += n
    return totals, sum(totals)


def _first_round_outcome(votes: list[int], expressed: int, registered: int) -> tuple[int | None, list[int]]:
    """Legislative round 1 at the full count: (the elected candidate's index or None, the indices
    qualified for round 2 best first): over 50 % of expressed votes and 25 % of registered voters
    elects; else 12.5 % of registered voters qualifies, the first two if fewer reach it."""
    order = sorted(range(len(votes)), key=lambda k: (-votes[k], k))
    best = order[0]
    if 2 * votes[best] > expressed and 4 * votes[best] >= registered:
        return best, []
    qualified = [k for k in order if 8 * votes[k] >= registered]
    if len(qualified) < 2:
        qualified = order[:2]
    return None, qualified


@dataclass
class _Final:
    """Round 2 in one circonscription: who stands (indices into its round-1 candidates)."""

    race: _Race
    standing: list[int]


def _round_two(
    rng: random.Random, registered: list[int], races: list[_Race], first: _Counts
) -> tuple[list[_Race], list[int], dict[str, str], _Counts, dict[str, list[str]]]:
    """The races of round 2 (round-1 winners left out; their rows index the round-2 roll), the
    round-1 rows that roll keeps in order, who round 1 elected, round 2's counts, and who qualified
    but withdrew."""
    finals: list[_Final] = []
    elected_first: dict[str, str] = {}
    withdrawn: dict[str, list[str]] = {}
    for race in races:
        totals, expressed = _totals(race, first)
        elected, qualified = _first_round_outcome(totals, expressed, race.registered)
        if elected is not None:
            elected_first[race.race] = race.ids[elected]
            continue
        standing = qualified[:2]
        if len(qualified) > 2 and rng.random() < _TRIANGULAIRE_STAYS:
            standing = qualified[:3]
        elif rng.random() < _SECOND_WITHDRAWS:
            standing = qualified[:1]
        gone = [race.ids[k] for k in qualified if k not in standing]
        if gone:
            withdrawn[race.race] = gone
        finals.append(_Final(race, standing))
    if not finals:
        raise ValueError("round 1 elected a deputy in every circonscription: no round 2")

    # The round-2 roll: the bureaux of the circonscriptions still to elect, renumbered.
    rows = [i for final in finals for i in final.race.rows]
    index = {old: new for new, old in enumerate(sorted(rows))}
    second_races: list[_Race] = []
    for final in finals:
        race = final.race
        second_races.append(
            _Race(
                race.race,
                race.name,
                race.department,
                [index[i] for i in race.rows],
                race.registered,
                race.turnout,
                [race.ids[k] for k in final.standing],
                [race.names[k] for k in final.standing],
                [race.parties[k] for k in final.standing],
            )
        )
    order = sorted(rows)
    registered2 = [registered[i] for i in order]
    turnout = [0.0] * len(order)
    spoil = [0.0] * len(order)
    votes: list[list[int]] = [[] for _ in order]
    ratio_of = {race.race: rng.lognormvariate(0, 0.06) for race in races}
    for final, race in zip(finals, second_races):
        # Blank and invalid ballots run high where many round-1 voters' family has nobody left.
        totals, expressed = _totals(final.race, first)
        families = {BLOCS[race.parties[j]] for j in range(len(race.ids))}
        orphans = sum(n for n, p in zip(totals, final.race.parties) if BLOCS[p] not in families)
        spoil_factor = (0.3 + 1.4 * orphans / max(1, expressed)) * rng.lognormvariate(0, 0.2)
        average = sum(first.voters[i] for i in final.race.rows) / max(1, race.registered)
        for old in final.race.rows:
            new = index[old]
            own = first.voters[old] / registered[old] if registered[old] else average
            turnout[new] = min(0.92, own * ratio_of[race.race] * math.exp(rng.gauss(0, 0.05)))
            spoil[new] = spoil_factor
    voters, blank, invalid = _ballots(rng, registered2, turnout, 2, spoil)

    for final in finals:
        parties1 = final.race.parties
        totals, expressed = _totals(final.race, first)
        prior = [2.0 * t / max(1, expressed) for t in totals]
        affinity = [
            [
                1.0
                if e == q
                else _OTHER_TRANSFER
                if BLOCS[parties1[q]] == "other"
                else _TRANSFER[BLOCS[parties1[e]]][BLOCS[parties1[q]]]
                for q in final.standing
            ]
            for e in range(len(parties1))
        ]
        momentum = [rng.lognormvariate(0, 0.12) for _ in final.standing]
        for old in final.race.rows:
            new = index[old]
            scores = [0.0] * len(final.standing)
            for e, n in enumerate(first.votes[old]):
                weight = n + prior[e]
                for j, a in enumerate(affinity[e]):
                    scores[j] += weight * a
            weights = [s * m * math.exp(rng.gauss(0, 0.08)) for s, m in zip(scores, momentum)]
            votes[new] = _split(voters[new] - blank[new] - invalid[new], weights)
    return second_races, order, elected_first, _Counts(voters, blank, invalid, votes), withdrawn


# --------------------------------------------------------------------------------------------
# the night


def _corrections(
    rng: random.Random,
    bureaux: list[RollEntry],
    race_ids: dict[str, list[str]],
    counts: _Counts,
    times: list[datetime],
    polls_close: datetime,
) -> dict[int, dict[str, int]]:
    """A few first reports that were wrong (seq 1): bureau index -> what it said instead of the truth."""
    early = [
        i
        for i, at in enumerate(times)
        if at <= polls_close + timedelta(hours=3) and counts.voters[i] >= 100 and len(counts.votes[i]) >= 2
    ]
    wrong: dict[int, dict[str, int]] = {}
    kinds = ["swap", "typo", "missing", "boxes"] * max(1, min(3, len(bureaux) // 20_000))
    for kind in kinds:
        pool = [i for i in early if i not in wrong]
        if not pool:
            break
        i = rng.choice(pool)
        ids = race_ids[bureaux[i].race or ""]
        votes = counts.votes[i]
        ranked = sorted(range(len(votes)), key=lambda k: (-votes[k], k))
        if kind == "swap" and votes[ranked[0]] != votes[ranked[1]]:
            # The first two candidates' columns swapped on entry: the bureau's leader flips, then back.
            a, b = ranked[0], ranked[1]
            wrong[i] = {ids[a]: votes[b], ids[b]: votes[a]}
        elif kind == "typo" and counts.voters[i] + 100 <= bureaux[i].registered:
            # One hundred votes too many for someone (and so one hundred voters).
            k = rng.randrange(len(votes))
            wrong[i] = {ids[k]: votes[k] + 100, "voters": counts.voters[i] + 100}
        elif kind == "missing" and votes[ranked[0]] >= 20:
            # A tally sheet left out: some of the leader's ballots missing.
            k = ranked[0]
            missing = rng.randint(5, votes[k] // 3)
            wrong[i] = {ids[k]: votes[k] - missing, "voters": counts.voters[i] - missing}
        elif kind == "boxes" and counts.blank[i] != counts.invalid[i]:
            # Blank and invalid ballots entered in each other's boxes.
            wrong[i] = {"blank": counts.invalid[i], "invalid": counts.blank[i]}
    return wrong


def _report(
    election: str,
    entry: RollEntry,
    ids: list[str],
    counts: _Counts,
    i: int,
    seq: int,
    at: datetime,
    override: dict[str, int] | None = None,
) -> BureauResult:
    votes = dict(zip(ids, counts.votes[i]))
    numbers = {"voters": counts.voters[i], "blank": counts.blank[i], "invalid": counts.invalid[i]}
    for key, value in (override or {}).items():
        if key in numbers:
            numbers[key] = value
        else:
            votes[key] = value
    return BureauResult.model_validate(
        {
            "election": election,
            "bureau": entry.bureau,
            "seq": seq,
            "reported_at": at,
            "registered": entry.registered,
            **numbers,
            "votes": votes,
        }
    )


def _timed(at: datetime, result: BureauResult) -> TimedResult:
    """A report at its time; ``result`` is validated already (no second pass over it)."""
    return TimedResult.model_construct(at=at, result=result)


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def legislative_scenario(
    roll: Election,
    election: str,
    round: int = 1,
    seed: int = 2017,
    polls_close: datetime | None = None,
) -> Scenario:
    """A generated night of the législatives on ``roll``'s bureaux that have a circonscription:
    one race per circonscription ("42-01"), invented candidates with 2017-like parties, counts
    and report times; the same for the same roll and seed. ``round`` 2 is the second round that
    follows round 1 of the same seed (circonscriptions that elected in round 1 left out).
    ``polls_close`` defaults to 20:00 on 11 June 2017 (round 1) or 18 June 2017 (round 2)."""
    with _cyclic_gc_paused():
        return _scenario(roll, election, round, seed, polls_close)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The generator allocates millions of small lists and ints and makes no reference cycles:
    Python's cyclic collector would only rescan them, over and over (a quarter of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _scenario(
    roll: Election,
    election: str,
    round: int = 1,
    seed: int = 2017,
    polls_close: datetime | None = None,
) -> Scenario:
    if round not in (1, 2):
        raise ValueError(f"round must be 1 or 2, not {round!r}")
    close = polls_close or LEGISLATIVE_POLLS_CLOSE[round]
    bureaux, races = _plan(random.Random(f"législatives {seed} plan"), roll)
    registered = [entry.registered for entry in bureaux]
    counts = _round_one(random.Random(f"législatives {seed} round 1"), registered, races)
    elected_first: dict[str, str] = {}
    withdrawn: dict[str, list[str]] = {}
    if round == 2:
        races, kept, elected_first, counts, withdrawn = _round_two(
            random.Random(f"législatives {seed} round 2"), registered, races, counts
        )
        bureaux = [bureaux[i] for i in kept]

    definition = Election.model_validate(
        {
            "election": election,
            "name": f"Élections législatives {close.year}, {'1er' if round == 1 else '2nd'} tour",
            "bureaux": bureaux,
            "round": round,
            "races": [
                {
                    "race": race.race,
                    "name": race.name,
                    "area": {"level": "circonscription", "id": race.race},
                    "seats": 1,
                    "rules": "legislative",
                    "candidates": [
                        {"id": i, "name": n, "party": p}
                        for i, n, p in zip(race.ids, race.names, race.parties)
                    ],
                }
                for race in races
            ],
        }
    )

    rng = random.Random(f"législatives {seed} round {round} night")
    per_commune = Counter(entry.commune for entry in bureaux)
    times = [close + report_delay(rng, per_commune[entry.commune] >= 20) for entry in bureaux]
    race_ids = {race.race: race.ids for race in races}
    wrong = _corrections(rng, bureaux, race_ids, counts, times, close)
    reports: list[TimedResult] = []
    for i, entry in enumerate(bureaux):
        ids, at = race_ids[entry.race or ""], times[i]
        if i in wrong:
            later = at + timedelta(seconds=rng.randint(20 * 60, 70 * 60))
            reports.append(_timed(at, _report(election, entry, ids, counts, i, 1, at, wrong[i])))
            reports.append(_timed(later, _report(election, entry, ids, counts, i, 2, later)))
        else:
            reports.append(_timed(at, _report(election, entry, ids, counts, i, 1, at)))
    reports.sort(key=lambda r: (r.at, r.result.bureau, r.result.seq))
    facts = _facts(seed, round, close, bureaux, races, counts, elected_first, withdrawn, wrong)
    return Scenario(election=definition, reports=reports, facts=facts, polls_close=close)


def _facts(
    seed: int,
    round_: int,
    close: datetime,
    bureaux: list[RollEntry],
    races: list[_Race],
    counts: _Counts,
    elected_first: dict[str, str],
    withdrawn: dict[str, list[str]],
    wrong: dict[int, dict[str, int]],
) -> dict[str, Any]:
    """National figures of the final counts (the corrected ones), and each race's outcome."""
    registered = sum(entry.registered for entry in bureaux)
    voters, blank, invalid = sum(counts.voters), sum(counts.blank), sum(counts.invalid)
    expressed = voters - blank - invalid
    by_party: Counter[str] = Counter()
    elected: dict[str, str] = {}
    qualified: dict[str, list[str]] = {}
    tied: list[str] = []
    for race in races:
        totals, race_expressed = _totals(race, counts)
        for party, n in zip(race.parties, totals):
            by_party[party] += n
        if round_ == 1:
            winner, going = _first_round_outcome(totals, race_expressed, race.registered)
            if winner is not None:
                elected[race.race] = race.ids[winner]
            else:
                qualified[race.race] = [race.ids[k] for k in going]
        else:
            best = max(totals)
            first = [race.ids[k] for k, n in enumerate(totals) if n == best]
            if len(first) == 1:
                elected[race.race] = first[0]
            else:
                tied.append(race.race)
    party_of = {i: p for race in races for i, p in zip(race.ids, race.parties)}
    facts: dict[str, Any] = {
        "source": f"generated: législatives night like 2017's, round {round_}, seed {seed}",
        "date": close.date().isoformat(),
        "round": round_,
        "bureaux": {"FR": len(bureaux)},
        "races": len(races),
        "candidates": sum(len(race.ids) for race in races),
        "candidates_by_party": dict(sorted(Counter(p for race in races for p in race.parties).items())),
        "registered": {"FR": registered},
        "voters": {"FR": voters},
        "blank": {"FR": blank},
        "invalid": {"FR": invalid},
        "expressed": {"FR": expressed},
        "turnout": {"FR": _percent(voters, registered)},
        "votes": {"FR": dict(by_party.most_common())},
        "shares": {"FR": {p: _percent(n, expressed) for p, n in by_party.most_common()}},
        "elected": elected,
        "seats": dict(Counter(party_of[c] for c in elected.values()).most_common()),
        "corrected": sorted(bureaux[i].bureau for i in wrong),
    }
    if round_ == 1:
        facts["target_shares"] = dict(ROUND_1_SHARES)
        facts["qualified"] = qualified
    else:
        facts["elected_in_round_1"] = elected_first
        facts["withdrawn"] = withdrawn
        facts["tied"] = tied
    facts["notes"] = (
        "figures of the final counts (corrections applied); shares are of expressed votes, by party "
        "(nuance); target_shares are 2017's national round-1 shares, which the generator aims at; "
        "elected and qualified follow the legislative rules at the full count (round 1: over 50 % of "
        "expressed and 25 % of registered elects, 12.5 % of registered qualifies, else the first two; "
        "round 2: plurality); round 2 leaves out the circonscriptions that round 1 decided "
        "(elected_in_round_1) and keeps the round-1 candidate ids."
    )
    return facts
