"""The HTTP edge: FastAPI app (``app.create_app``), controllers, error mapping, middleware."""
