"""SQLSTATE classes that mean "the database cannot serve us now" (a 503, retry later)."""

from __future__ import annotations

# Connection exceptions, insufficient resources (too many clients), operator
# intervention (shutdown, cannot connect now, query canceled by timeout).
_UNAVAILABLE_CLASSES = ("08", "53", "57")


def is_unavailable_sqlstate(sqlstate: object) -> bool:
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_CLASSES)
