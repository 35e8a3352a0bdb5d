"""How standings and events look in a terminal (rich renderables, no I/O)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from stream.domain.messages import Standings, UpdateEvent

__all__ = ["standings_table", "areas_table", "event_line"]


def _lead(leader: str | None, tied: list[str] | None) -> str:
    if tied:
        return "tie " + " = ".join(tied)
    return leader or "—"


def standings_table(standings: Standings) -> Table:
    """One area: every candidate's votes and share, turnout and progress in the caption."""
    turnout = "—" if standings.turnout is None else f"{standings.turnout:.2f} %"
    caption = [
        f"turnout {turnout} · {standings.voters:,} voters of {standings.registered:,} registered · "
        f"blank {standings.blank:,} · invalid {standings.invalid:,} · "
        f"{standings.bureaux_reported:,}/{standings.bureaux_total:,} bureaux"
    ]
    statuses = standings.bureaux_by_status or {}
    if statuses.get("definitive") or statuses.get("annulled"):
        caption.append(
            f"definitive {statuses.get('definitive', 0):,} · annulled {statuses.get('annulled', 0):,} bureaux"
        )
    if standings.race is not None:
        if standings.elected:
            caption.append(f"elected: {', '.join(standings.elected)}")
        elif standings.qualified:
            caption.append(f"second round: {', '.join(standings.qualified)}")
        else:
            caption.append("not settled yet")
    elif standings.decided:
        called = ", ".join(standings.qualified) if standings.qualified else standings.leader
        caption.append(f"decided: {called}")
    if standings.seats:
        caption.append(
            "seats: "
            + ", ".join(
                f"{party} {seats.won} ({seats.decided} decided)"
                for party, seats in sorted(standings.seats.items(), key=lambda item: -item[1].won)
            )
        )
    if standings.turnout_at:
        caption.append("turnout at " + ", ".join(f"{h} {v:.2f} %" for h, v in standings.turnout_at.items()))
    change = standings.change
    if change is not None and standings.reference is not None and change.voters_pct is not None:
        caption.append(
            f"against {standings.reference.election} ({standings.reference.bureaux:,} bureaux in both): "
            f"voters {change.voters_pct:+.2f} %"
            + ("" if change.turnout_points is None else f", turnout {change.turnout_points:+.2f} points")
        )
    if standings.as_of is not None:
        caption.append(f"as of {standings.as_of.isoformat()}")
    table = Table(
        title=f"{standings.name} ({standings.level} {standings.area})",
        min_width=64,
        caption="\n".join(caption),
    )
    by_party = standings.race is None and standings.seats is not None
    table.add_column("party" if by_party else "candidate")
    table.add_column("votes", justify="right")
    table.add_column("share", justify="right")
    points = change.shares_points if change is not None else {}
    if points:
        table.add_column("points", justify="right")
    for candidate, votes in sorted(standings.votes.items(), key=lambda item: -item[1]):
        style = "bold" if candidate == standings.leader else ""
        row = [candidate, f"{votes:,}", f"{standings.shares[candidate]:.2f} %"]
        if points:
            row.append(f"{points[candidate]:+.2f}" if candidate in points else "")
        table.add_row(*row, style=style)
    return table


def areas_table(all_standings: list[Standings]) -> Table:
    """Many areas of one level, one row each."""
    table = Table(title=f"{all_standings[0].level} results ({len(all_standings):,} areas)")
    for column, justify in (
        ("area", "left"),
        ("name", "left"),
        ("leader", "left"),
        ("margin", "right"),
        ("turnout", "right"),
        ("bureaux", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for s in all_standings:
        table.add_row(
            s.area,
            s.name,
            _lead(s.leader, s.tied),
            f"{s.margin:,}",
            "—" if s.turnout is None else f"{s.turnout:.2f} %",
            f"{s.bureaux_reported}/{s.bureaux_total}",
        )
    return table


def event_line(event: UpdateEvent) -> Text:
    """A one-line summary of an update event."""
    when = event.at.astimezone().strftime("%H:%M:%S")
    text = Text(f"{when} ")
    text.append(f"{event.level[:4]:<4} ", style="dim")
    text.append(f"{event.name[:20]:<20} ")
    if event.kind == "leader_changed":
        text.append(
            f"leader {_lead(event.previous_leader, None)} → {_lead(event.leader, event.tied)}",
            style="bold yellow",
        )
        text.append(f" +{event.margin:,}")
    elif event.kind == "turnout_changed":
        before = "—" if event.previous_turnout is None else f"{event.previous_turnout:.2f}"
        text.append(f"turnout {before} → {event.turnout:.2f} %", style="cyan")
    elif event.kind in ("reported", "corrected"):
        text.append(f"{event.kind} · {_lead(event.leader, event.tied)} +{event.margin:,}", style="dim")
    elif event.kind == "decided":
        called = ", ".join(event.qualified) if event.qualified else event.leader
        text.append(f"decided: {called}", style="bold magenta")
    elif event.kind == "undecided":
        text.append("undecided again (a correction)", style="bold red")
    elif event.kind == "turnout_reported":
        text.append(
            f"turnout at {event.hour}: {(event.turnout_at or {}).get(event.hour or '', 0):.2f} %",
            style="cyan",
        )
    else:
        text.append("complete", style="bold green")
    text.append(f"  {event.bureaux_reported}/{event.bureaux_total}", style="dim")
    return text
