"""The development secret: made once under ``./var/`` and reused, never a constant."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from entrypoints.settings import Settings


def load_or_create_secret(path: Path) -> str:
    """Read the secret at ``path``, creating it (mode 0600) if it is missing.

    Several processes may start at once: the file is written aside and
    linked into place, so a reader never sees it half-written and exactly one
    writer wins.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if len(value.encode()) < 32:
        raise ValueError(f"{path} holds fewer than 32 bytes; delete it to make a new secret")
    return value


def with_secret(settings: Settings) -> Settings:
    """``settings`` with ``jwt_secret`` filled from the secret file when unset."""
    if settings.jwt_secret is not None:
        return settings
    secret = load_or_create_secret(settings.secret_file)
    return settings.model_copy(update={"jwt_secret": SecretStr(secret)})
