"""What requests use, resolved from the container once, when the app starts."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from application.ports import RateLimiter, Storage, TokenVerifier
from application.signals import ChangeSignals
from application.task_service import TaskService
from entrypoints.http.cursor import CursorCodec, SyncTokenCodec
from entrypoints.http.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Services:
    """The app-wide objects of one app, built by ``entrypoints.container.Container``.

    Handlers read this one typed object rather than asking the container per
    request: dependency-injector's wiring patches modules process-wide (two
    apps in one process would share it), and every injected ``Depends`` costs
    FastAPI a solve step on the hot path.
    """

    storage: Storage
    tasks: TaskService
    token_verifier: TokenVerifier
    rate_limiter: RateLimiter | None
    metrics: Metrics
    cursors: CursorCodec
    sync_tokens: SyncTokenCodec
    signals: ChangeSignals


def services(request: Request) -> Services:
    """The services of the app serving ``request``; set by the app's lifespan."""
    resolved: Services = request.app.state.services
    return resolved
