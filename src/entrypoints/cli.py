"""``taskvault serve | migrate | token``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

from pydantic import ValidationError

from adapters.sql.distribution import NotDistributable
from adapters.sql.migrate import MigrationNotPermitted
from entrypoints.container import Container
from entrypoints.logging import configure_logging, get_logger
from entrypoints.secret import with_secret
from entrypoints.settings import Settings, describe_error

log = get_logger("cli")

WORKER_HEALTHCHECK_S = 30
"""How long a worker process may take to answer its supervisor's ping (``--workers``)."""


class CommandError(Exception):
    """Stops the command with a one-line message and exit status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskvault", description="Multi-user task API.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", help="bind address (default TASKVAULT_HOST)")
    serve.add_argument("--port", type=int, help="port (default TASKVAULT_PORT)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    serve.add_argument(
        "--root-path",
        default="",
        help="the path prefix a reverse proxy serves the API under (e.g. /taskvault)",
    )

    commands.add_parser("migrate", help="apply database migrations")

    token = commands.add_parser("token", help="print an HS256 token for trying the API")
    token.add_argument("sub", help="the user id (the token's sub)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "migrate":
            _migrate(settings)
            return 0
        print(_token(settings, args.sub, args.ttl))
        return 0
    except ValidationError as error:
        print(f"taskvault: {describe_error(error)}", file=sys.stderr)
        return 2
    except (CommandError, ValueError, OSError) as error:
        print(f"taskvault: {error}", file=sys.stderr)
        return 1


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    configure_logging(settings.log_level)
    # Made here, once, before any worker starts: workers only read it.
    with_secret(settings)
    if not args.no_migrate:
        _migrate(settings)
    # uvicorn handles SIGTERM itself (stop accepting, let requests finish for
    # up to TASKVAULT_SHUTDOWN_GRACE_S, close the pool), then raises the signal
    # again to the handler that was there before: this one, so a stop exits 0.
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.run(
        "entrypoints.asgi:app_from_environment",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        # X-Forwarded-* are the app's to read, from TASKVAULT_TRUSTED_PROXIES only.
        proxy_headers=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        # uvicorn's 5 s: a worker still starting on a busy machine (spawned, so
        # it imports everything afresh) missed its ping, was killed and
        # respawned, again and again, and never served. A crashed worker is
        # still replaced at once; only a hung one now takes this long.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        # Links, Location and the OpenAPI document's server name the public prefix.
        root_path=args.root_path,
    )
    return 0


def _stopped(signum: int, frame: FrameType | None) -> None:
    """Exit 0 at once: the server has shut down (or had not started yet).

    Not ``SystemExit``: a request cancelled when the grace period ran out can
    leave aiosqlite's (non-daemon) thread waiting on a lock, and the
    interpreter would wait for that thread forever at exit.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _migrate(settings: Settings) -> None:
    try:
        migrated = asyncio.run(Container(settings=settings).migrate())
    except MigrationNotPermitted as error:
        raise CommandError(
            f"database role {str(error)!r} may not migrate the schema: run `taskvault migrate` "
            "as the role that owns it, then `taskvault serve --no-migrate` as this one"
        ) from None
    except NotDistributable as error:
        # Its message names only tables and says what to do.
        raise CommandError(f"migration failed: {error}") from None
    except Exception as error:
        raise CommandError(f"migration failed: {type(error).__name__}") from None
    log.info("migrations applied" if migrated else "memory store: nothing to migrate")


def _token(settings: Settings, sub: str, ttl: int) -> str:
    if ttl < 1:
        raise CommandError("--ttl must be at least 1 second")
    if settings.jwks_url is not None:
        raise CommandError(
            "TASKVAULT_JWKS_URL is set, so the server accepts only your identity "
            "provider's tokens; get one from the provider"
        )
    verifier = Container(settings=with_secret(settings)).hmac_verifier()
    return verifier.issue(sub, ttl_s=ttl, now=int(time.time()))


if __name__ == "__main__":
    raise SystemExit(main())
