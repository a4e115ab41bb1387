"""The composition root: which adapter serves which port."""

from __future__ import annotations

from dependency_injector import containers, providers

from adapters.auth import CachingTokenVerifier, HmacTokenVerifier, JwksTokenVerifier
from adapters.memory import MemoryStorage
from adapters.ratelimit import LimitsRateLimiter
from adapters.sqlalchemy import SqlStorage
from adapters.sqlalchemy.engine import create_engine
from adapters.system import SystemClock, UuidV7Generator
from application.ports import RateLimiter, Storage, TokenVerifier
from application.task_service import TaskService
from entrypoints.settings import MEMORY_URL, Settings


def open_storage(settings: Settings) -> Storage:
    if settings.database_url == MEMORY_URL:
        return MemoryStorage()
    engine = create_engine(
        settings.database_url,
        timeout_s=settings.db_timeout_s,
        pool_size=settings.db_pool_size,
    )
    return SqlStorage(engine)


def token_verifier(settings: Settings) -> TokenVerifier:
    """JWKS keys when a JWKS URL is set (HS256 is then refused), else the secret;
    either way behind a cache of tokens that verified."""
    return CachingTokenVerifier(_signature_verifier(settings))


def _signature_verifier(settings: Settings) -> TokenVerifier:
    if settings.jwks_url is not None:
        return JwksTokenVerifier(
            str(settings.jwks_url),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=settings.jwt_leeway_s,
            min_refresh_s=settings.jwks_min_refresh_s,
            timeout_s=settings.jwks_timeout_s,
        )
    if settings.jwt_secret is None:
        raise ValueError("TASKVAULT_JWT_SECRET is not set and no secret file was loaded")
    return HmacTokenVerifier(
        settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
    )


def rate_limiter(settings: Settings) -> RateLimiter | None:
    if settings.rate_limit == "off":
        return None
    return LimitsRateLimiter(settings.rate_limit, settings.redis_url)


class Container(containers.DeclarativeContainer):
    """App-wide singletons. Request-scoped work is a unit of work the service opens."""

    settings = providers.Dependency(instance_of=Settings)
    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidV7Generator)
    storage = providers.Singleton(open_storage, settings)
    token_verifier = providers.Singleton(token_verifier, settings)
    rate_limiter = providers.Singleton(rate_limiter, settings)
    task_service = providers.Singleton(
        TaskService,
        uow_factory=storage.provided.unit_of_work,
        clock=clock,
        ids=ids,
    )
