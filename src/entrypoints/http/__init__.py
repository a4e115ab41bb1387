"""The HTTP edge: FastAPI app, controllers, error mapping and middleware."""

from entrypoints.http.app import create_app

__all__ = ["create_app"]
