"""Registering an election id again: what may change freely, and what needs ``--replace``.

The roll, the candidates and the rules decide where every report counts. Changed under workers
that already counted reports, they would leave a moved bureau in its old commune and add it to
its new one. So once results exist such a change is refused, unless ``--replace`` is given: the
definition then gets the next ``revision``, and the election is counted again from its reports
under it (``adapters.kafka.recount``). Names, the order of the roll, an embargo or the rehearsal
flag change nothing counted: they are registered again under the same revision, and workers pick
them up (``roll.definition_stamp``). A revision never goes down: the registered definition is
looked up in the durable topic when Redis has lost it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream.domain.messages import Election

__all__ = ["COUNTED_FIELDS", "Registration", "RegistrationRefused", "counted_shape", "plan_registration"]

#: What decides where and how a report counts.
COUNTED_FIELDS = ("candidates", "bureaux", "races", "round", "qualify", "compare_to")


def counted_shape(election: Election) -> dict[str, Any]:
    """What of a definition decides where and how each report counts, by field, order and names
    aside: each bureau's places, race and registered voters; candidates with their party; races'
    areas, seats, rules and candidates; the round, qualify and compare_to."""
    races = {
        race.race: (
            race.area.level,
            race.area.id,
            race.seats,
            race.rules,
            frozenset((c.id, c.party) for c in race.candidates),
        )
        for race in election.races or ()
    }
    return {
        "candidates": frozenset((c.id, c.party) for c in election.candidates),
        "bureaux": {
            b.bureau: (b.commune, b.department, b.circonscription, b.race, b.registered)
            for b in election.bureaux
        },
        "races": races if election.races is not None else None,
        "round": election.round,
        "qualify": election.qualify,
        "compare_to": election.compare_to,
    }


class RegistrationRefused(Exception):
    """Registering this definition would corrupt what is counted; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Registration:
    definition: Election
    #: the election must be counted again from its reports (a new revision replaced one with results)
    recount: bool


def plan_registration(
    registered: Election | None, definition: Election, has_results: bool, replace: bool
) -> Registration:
    """What to register (with which revision), or ``RegistrationRefused``."""
    if registered is None:
        return Registration(definition.model_copy(update={"revision": 1}), recount=False)
    before, after = counted_shape(registered), counted_shape(definition)
    changed = [field for field in COUNTED_FIELDS if before[field] != after[field]]
    if not changed:
        return Registration(definition.model_copy(update={"revision": registered.revision}), recount=False)
    if has_results and not replace:
        raise RegistrationRefused(
            f"election {definition.election} already has results, and this definition changes its "
            f"{', '.join(changed)}: counted as it is, bureaux would count under two areas. Give --replace "
            "to register it as a new revision and count the election again from its reports"
        )
    revision = registered.revision + 1
    return Registration(definition.model_copy(update={"revision": revision}), recount=has_results)
