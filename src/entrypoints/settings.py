"""Settings from ``TASKVAULT_*`` environment variables or a ``.env`` file."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, HttpUrl, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from application.sync import RETENTION_DAYS_DEFAULT

ENV_PREFIX = "TASKVAULT_"
MEMORY_URL = "memory://"
_URL_PREFIXES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
_URL_ALIASES = {"postgres://": "postgresql+asyncpg://", "postgresql://": "postgresql+asyncpg://"}


class Settings(BaseSettings):
    """Read once at start; a bad value stops the process (see ``describe_error``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite+aiosqlite:///./var/taskvault.db"
    jwt_secret: SecretStr | None = None
    secret_file: Path = Path("var/jwt-secret")
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: int = Field(default=30, ge=0, le=3600)
    jwks_url: HttpUrl | None = None
    jwks_min_refresh_s: float = Field(default=60.0, ge=0, le=86_400)
    jwks_timeout_s: float = Field(default=5.0, gt=0, le=60)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    db_timeout_s: float = Field(default=5.0, gt=0, le=300)
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_pooler: Literal["none", "transaction"] = "none"
    """``transaction`` behind PgBouncer (or another pooler) in transaction mode."""
    log_level: str = "INFO"
    rate_limit: str = "1200/minute"
    redis_url: str | None = None
    shutdown_grace_s: int = Field(default=10, ge=0, le=3600)
    sync_retention_days: int = Field(default=RETENTION_DAYS_DEFAULT, ge=1, le=3650)
    """How long tombstones, and so the change feed's ``since`` tokens, stay valid."""

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        for alias, canonical in _URL_ALIASES.items():
            if value.startswith(alias):
                value = canonical + value[len(alias) :]
        if value == MEMORY_URL or value.startswith(_URL_PREFIXES):
            return value
        raise ValueError(
            "must start with sqlite+aiosqlite://, postgresql+asyncpg:// or be memory://"
        )

    @field_validator("jwt_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes")
        return value

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    "must be IP addresses or networks, comma-separated (e.g. 10.0.0.0/8)"
                ) from None
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        if value.strip().lower() == "off":
            return "off"
        if not re.fullmatch(r"\s*\d+\s*/\s*(second|minute|hour|day)s?\s*", value):
            raise ValueError("must look like 1200/minute (per second, minute, hour or day) or off")
        if int(value.split("/")[0]) < 1:
            raise ValueError("must allow at least one request")
        return value.strip()

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "async+redis")):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level


def describe_error(error: ValidationError) -> str:
    """One line naming the first bad variable, without echoing its value."""
    first = error.errors(include_input=False, include_url=False)[0]
    name = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else ENV_PREFIX
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid setting {name}: {message}"
