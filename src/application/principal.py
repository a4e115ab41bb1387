"""Who is calling: the only source of identity inside the application."""

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller; ``user_id`` is the verified token's ``sub``."""

    user_id: str
    expires_at: float = field(default=math.inf, compare=False)
    """When the proof of identity (the token's ``exp``) runs out, in Unix seconds."""
