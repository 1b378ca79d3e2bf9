"""Per adaptation round, what the clinicians' labels cost, as the module shows it (the worker's ``GET /report``).

A round is a model version and the labels new to it (docs/worker.md, "Effort per round"). Pure Python: the
widget renders the table this returns, and only when the reply changed.
"""

import html
from dataclasses import dataclass
from typing import List, Optional

SHOWN_ROUNDS = 6  # the newest ones; the total counts them all


@dataclass(frozen=True)
class RoundSums:
    version: str
    cases: int
    slices: int
    minutes: Optional[float]  # None: a label of the round has no effort record
    minutesKnown: int  # labels of the round that have one

    @classmethod
    def fromReply(cls, item):
        minutes = item.get("minutes")
        return cls(str(item.get("version") or "?"), int(item.get("cases") or 0),
                   int(item.get("annotated_slices") or 0), None if minutes is None else float(minutes),
                   int(item.get("minutes_known") or 0))

    def minutesText(self):
        if self.minutes is not None:
            return f"{self.minutes:.1f}"
        return f"unknown ({self.minutesKnown} of {self.cases} recorded)" if self.cases else "unknown"


def roundsOf(reply) -> Optional[List[RoundSums]]:
    """The rounds of a ``GET /report`` reply, oldest first; None when the worker has no report (older worker)."""
    if not isinstance(reply, dict):
        return None
    return [RoundSums.fromReply(item) for item in reply.get("rounds") or [] if isinstance(item, dict)]


def roundsTable(rounds: List[RoundSums], limit=SHOWN_ROUNDS):
    """A small rich-text table: round, cases, slices, minutes; the newest ``limit`` rounds and a total row."""
    if not rounds:
        return "Effort per round: no adaptation round yet (each Adapt model that trains on labels is one)."
    header = "".join(f"<th align='{a}'>{t}</th>" for t, a in
                     (("Round", "left"), ("Cases", "right"), ("Slices", "right"), ("Minutes", "right")))
    rows = [header]
    for r in rounds[-limit:]:
        cells = (html.escape(r.version), r.cases, r.slices, html.escape(r.minutesText()))
        rows.append("".join(f"<td align='{'left' if i == 0 else 'right'}'>{c}</td>" for i, c in enumerate(cells)))
    known = [r.minutes for r in rounds if r.minutes is not None]
    total = f"{sum(known):.1f}" + ("" if len(known) == len(rounds) else " + unknown")
    label = "All" if len(rounds) <= limit else f"All {len(rounds)}"
    rows.append(f"<td><b>{label}</b></td><td align='right'><b>{sum(r.cases for r in rounds)}</b></td>"
                f"<td align='right'><b>{sum(r.slices for r in rounds)}</b></td><td align='right'><b>{total}</b></td>")
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    return f"Effort per round:<table cellspacing='0' cellpadding='2'>{body}</table>"
