"""Factory for uvicorn (``--factory``): each worker process builds its own app."""

from __future__ import annotations

from fastapi import FastAPI

from entrypoints.http import create_app
from entrypoints.logging import configure_logging
from entrypoints.settings import Settings


def app_from_environment() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)
