"""Liveness and readiness probes; no token needed."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from application.errors import StorageUnavailable
from entrypoints.http.errors import RETRY_AFTER_S
from entrypoints.http.jsonbody import JSONResponse
from entrypoints.http.services import services

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok", "unavailable"]


@router.get(
    "/healthz",
    operation_id="healthz",
    summary="Liveness: 200 while the process runs",
    response_model=Health,
    openapi_extra={"security": []},
)
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness: 200 when the database answers, else 503",
    response_model=Health,
    responses={
        503: {
            "description": "The database does not answer.",
            "model": Health,
            "headers": {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
        }
    },
    openapi_extra={"security": []},
)
async def readyz(request: Request) -> Response:
    try:
        await services(request).storage.ping()
    except StorageUnavailable:
        return JSONResponse(
            {"status": "unavailable"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S}
        )
    return JSONResponse({"status": "ok"})
