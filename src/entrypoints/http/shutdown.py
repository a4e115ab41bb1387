"""Feed requests held by ``wait`` answer as soon as the server is told to stop."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from application.signals import ChangeSignals

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def answering_waiters_on_stop(signals: ChangeSignals) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM close ``signals`` too, then go on
    to the handler that was there.

    uvicorn answers a stop signal by waiting for the requests in flight (up to
    TASKVAULT_SHUTDOWN_GRACE_S) and only then runs the lifespan's shutdown,
    which closes the signals: a request held by ``wait`` would hold the stop
    for the whole grace period and then be cancelled without an answer.
    Chained in front of the server's own handler (uvicorn sets it with
    ``signal.signal`` before the lifespan starts), the stop wakes every waiter
    at once, and each answers 200 with what it has while the server drains.

    Only in the main thread (the only one that may set handlers), and only in
    front of a handler that is a function: a signal nobody handles keeps its
    default action.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Callable[[int, FrameType | None], object]] = {}
    for stop in STOP_SIGNALS:
        handler = signal.getsignal(stop)
        if callable(handler):
            previous[stop] = handler

    def on_stop(signum: int, frame: FrameType | None) -> None:
        # A signal handler runs between two bytecodes of whatever the loop was
        # doing: the waiters' futures are the loop's to resolve, on its next turn.
        if not loop.is_closed():
            loop.call_soon_threadsafe(signals.close)
        previous[signum](signum, frame)

    for chained in previous:
        signal.signal(chained, on_stop)
    try:
        yield
    finally:
        for chained, handler in previous.items():
            # Unless another handler was chained in front of this one since
            # (two apps in one process): that one stays, and reaches this one.
            if signal.getsignal(chained) is on_stop:
                signal.signal(chained, handler)
