"""In-memory store: the fake for unit tests and the ``memory://`` demo store."""

from adapters.memory.storage import MemoryStorage

__all__ = ["MemoryStorage"]
