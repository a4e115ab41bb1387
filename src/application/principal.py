"""Who is calling: the only source of identity inside the application."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller; ``user_id`` is the verified token's ``sub``."""

    user_id: str
