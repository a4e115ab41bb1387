"""Errors raised by the domain when a rule is broken."""


class DomainError(Exception):
    """Base of every error the domain raises."""


class InvalidTask(DomainError):
    """A task field breaks an invariant; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TaskNotFound(DomainError):
    """No task with that id belongs to the owner (it may be someone else's)."""
