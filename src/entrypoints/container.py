"""The composition root: which adapter serves which port, and the lifetime of each.

``Container`` builds every app-wide object from the settings. Those that
hold connections are resources: ``init_resources`` opens them and
``shutdown_resources`` closes them, dependents before what they depend on.
``create_app`` and the CLI take everything they use from here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from dependency_injector import containers, providers

from adapters.asyncpg import PgStorage
from adapters.auth import CachingTokenVerifier, HmacTokenVerifier, JwksTokenVerifier
from adapters.memory import MemoryStorage
from adapters.ratelimit import LimitsRateLimiter
from adapters.sql.migrate import upgrade
from adapters.sqlite import SqliteStorage
from adapters.system import SystemClock, UuidV7Generator
from application.ports import RateLimiter, Storage
from application.signals import ChangeSignals
from application.task_service import TaskService
from entrypoints.http.cursor import CursorCodec, SyncTokenCodec
from entrypoints.http.metrics import Metrics
from entrypoints.http.services import Services
from entrypoints.logging import get_logger
from entrypoints.settings import MEMORY_URL, Settings

log = get_logger("container")

WATCH_RESTART_S = 1.0


def open_storage(settings: Settings) -> Storage:
    """Memory, SQLite through ``sqlite3``, or PostgreSQL through asyncpg, by URL."""
    url = settings.database_url
    if url == MEMORY_URL:
        return MemoryStorage()
    timeout_s, pool_size = settings.db_timeout_s, settings.db_pool_size
    if url.startswith("postgresql"):
        return PgStorage(
            url,
            timeout_s=timeout_s,
            pool_size=pool_size,
            pooled_by_transaction=settings.db_pooler == "transaction",
        )
    return SqliteStorage(url, timeout_s=timeout_s)


async def storage_lifetime(settings: Settings) -> AsyncIterator[Storage]:
    store = open_storage(settings)
    try:
        yield store
    finally:
        await store.close()


async def _keep_watching(store: Storage, signals: ChangeSignals) -> None:
    """``store.watch``, started again a second after it fails: a lost LISTEN
    connection or an outage must not end cross-process wakeups for good."""
    while True:
        try:
            await store.watch(signals)
        except Exception as error:
            log.warning(
                "change watch failed; restarting", extra={"error_type": type(error).__name__}
            )
            await asyncio.sleep(WATCH_RESTART_S)
            continue
        # A store with nothing to watch returns at once.
        return


async def signals_lifetime(store: Storage) -> AsyncIterator[ChangeSignals]:
    """Waiting feed requests, and the watch that wakes them for other processes' commits.

    Closed first at shutdown (resources close in reverse): waiters answer
    before the store they read goes.
    """
    signals = ChangeSignals()
    watch = asyncio.create_task(_keep_watching(store, signals))
    try:
        yield signals
    finally:
        signals.close()
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch


async def rate_limiter_lifetime(settings: Settings) -> AsyncIterator[RateLimiter | None]:
    if settings.rate_limit == "off":
        yield None
        return
    limiter = LimitsRateLimiter(settings.rate_limit, settings.redis_url)
    try:
        yield limiter
    finally:
        await limiter.close()


def _jwt_secret(settings: Settings) -> str:
    """The secret behind HS256 tokens and list cursors (``with_secret`` fills it in)."""
    if settings.jwt_secret is None:
        raise ValueError("TASKVAULT_JWT_SECRET is not set and no secret file was loaded")
    return settings.jwt_secret.get_secret_value()


def make_hmac_verifier(settings: Settings) -> HmacTokenVerifier:
    return HmacTokenVerifier(
        _jwt_secret(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
    )


def make_jwks_verifier(settings: Settings) -> JwksTokenVerifier:
    return JwksTokenVerifier(
        str(settings.jwks_url),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
        min_refresh_s=settings.jwks_min_refresh_s,
        timeout_s=settings.jwks_timeout_s,
    )


def verifier_kind(settings: Settings) -> str:
    """JWKS keys when a JWKS URL is set (HS256 is then refused), else the secret."""
    return "jwks" if settings.jwks_url is not None else "hmac"


def make_cursor_codec(settings: Settings) -> CursorCodec:
    return CursorCodec(_jwt_secret(settings).encode())


def retention_of(settings: Settings) -> timedelta:
    return timedelta(days=settings.sync_retention_days)


def make_sync_tokens(settings: Settings) -> SyncTokenCodec:
    return SyncTokenCodec(_jwt_secret(settings).encode())


async def migrate_database(settings: Settings) -> bool:
    """Bring the database up to date; False when there is none (``memory://``)."""
    if settings.database_url == MEMORY_URL:
        return False
    await upgrade(settings.database_url)
    return True


class Container(containers.DeclarativeContainer):
    """App-wide objects. Request-scoped work is a unit of work the service opens."""

    settings = providers.Dependency(instance_of=Settings)
    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidV7Generator)
    storage = providers.Resource(storage_lifetime, settings)
    signals = providers.Resource(signals_lifetime, storage)
    rate_limiter = providers.Resource(rate_limiter_lifetime, settings)
    hmac_verifier = providers.Singleton(make_hmac_verifier, settings)
    jwks_verifier = providers.Singleton(make_jwks_verifier, settings)
    token_verifier = providers.Singleton(
        CachingTokenVerifier,
        providers.Selector(
            providers.Callable(verifier_kind, settings), jwks=jwks_verifier, hmac=hmac_verifier
        ),
    )
    cursor_codec = providers.Singleton(make_cursor_codec, settings)
    sync_tokens = providers.Singleton(make_sync_tokens, settings)
    metrics = providers.Singleton(Metrics, storage)
    task_service = providers.Singleton(
        TaskService,
        store=storage,
        clock=clock,
        ids=ids,
        signals=signals,
        retention=providers.Callable(retention_of, settings),
    )
    services = providers.Singleton(
        Services,
        storage=storage,
        tasks=task_service,
        token_verifier=token_verifier,
        rate_limiter=rate_limiter,
        metrics=metrics,
        cursors=cursor_codec,
        sync_tokens=sync_tokens,
        signals=signals,
    )
    migrate = providers.Coroutine(migrate_database, settings)
