"""Nothing secret leaks: record every response and log line of the session, then scan them.

A pytest plugin (``pytest_plugins = ["tests.leakscan"]`` in ``tests/conftest.py``):

- ``httpx.ASGITransport.handle_async_request`` is wrapped for the session, so
  every in-process response is kept (status, headers, body) together with the
  bearer token its request carried and the test that sent it;
- a logging handler on the root, ``taskvault`` and ``uvicorn`` loggers keeps
  every record, formatted as the service writes it (``JsonFormatter``), plus
  any exception or stack text attached to the record;
- when the session ends, everything is scanned for the JWT secret, any bearer
  token that was sent, tracebacks and SQL text. A leak fails the session and
  is reported with the test that caused it and a masked excerpt.

``LeakRecorder`` and ``recording()`` also work without the plugin, which is
how ``tests/integration/test_no_leaks.py`` runs on its own.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from entrypoints.logging import LOGGER_NAME, JsonFormatter
from tests.support import SECRET

# Loggers the handler sits on. The service's own loggers stop propagating once
# ``configure_logging`` ran, so the root alone would miss them.
LOGGERS = ("", LOGGER_NAME, "uvicorn", "uvicorn.error")

# What a traceback looks like; anywhere in a log line or an error response.
_TRACEBACK = re.compile(r"Traceback|File \"[^\"\n]+\", line \d+")
# In a successful response only the unmistakable forms count: a task titled
# "Traceback" that a client stored itself and reads back is data, not a leak.
_TRACEBACK_STRICT = re.compile(r"Traceback \(most recent call last\)|File \"[^\"\n]+\", line \d+")

# SQL text. Searched only in error responses (status >= 400) and log lines:
# successful bodies are user data (a title may well read "select the
# venue from the list"), and the OpenAPI document and /docs are prose and
# JavaScript that mention "update", "select" and "delete" in passing. The
# select/update windows are bounded (SQLAlchemy's statements put FROM and SET
# on a new line, hence DOTALL) so that two unrelated words far apart in an
# error body do not pair up; text the client sent itself is removed first
# (see ``_without``).
SQL_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE | re.DOTALL)
    for pattern in (
        r"\bselect\b.{1,400}?\bfrom\b",
        r"\binsert\s+into\b",
        r"\bupdate\b.{1,400}?\bset\b",
        r"\bdelete\s+from\b",
        r"\b(?:from|into|update|join)\s+\"?(?:tasks|idempotency_keys|pg_roles|alembic_version)\b",
        r"\bsqlalchemy\b",
        r"\basyncpg\b",
        r"\baiosqlite\b",
        r"\bsqlite3\b",
        r"\bpsycopg2?\b",
    )
)

# A run of base64url characters: a JWT's segments, an opaque token. A sent
# token counts as leaked when its last run of at least this length (a JWT's
# signature) appears as a run of its own in a response or log line. Shorter
# "tokens" are the garbage that authentication tests send ("x", "not-a-jwt")
# and would match ordinary words.
MIN_TOKEN_RUN = 16
_RUN = re.compile(rf"[A-Za-z0-9_-]{{{MIN_TOKEN_RUN},}}")

# Client-supplied values a log record may carry (the token's ``sub``, the
# client's ``X-Request-ID``); only the SQL search skips them.
_ECHOED_LOG_FIELDS = ("user_id", "request_id")

# An app's own secret is scanned for too, when it looks like one: a test
# secret such as forty "s" would match any text made of that letter.
MIN_SECRET_DISTINCT = 8

_EXCERPT = 80
_SECRET_MASK = "[SECRET]"
_TOKEN_MASK = "[TOKEN]"


@dataclass(frozen=True)
class Exchange:
    """One in-process HTTP exchange, as the client saw it."""

    test_id: str
    method: str
    url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str
    token: str | None
    echoed: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.status} response to {self.method} {self.url}"


@dataclass(frozen=True)
class LogLine:
    test_id: str
    logger: str
    text: str
    echoed: tuple[str, ...]


@dataclass(frozen=True)
class Leak:
    test_id: str
    where: str
    what: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.test_id}: {self.what} in {self.where}: ...{self.excerpt}..."


@dataclass(frozen=True)
class Mark:
    """How much had been recorded at some point; ``LeakRecorder.scan(since=...)``."""

    exchanges: int
    lines: int


@dataclass
class LeakRecorder:
    """Everything the session's responses and loggers said, and the scan over it."""

    secrets: set[str] = field(default_factory=lambda: {SECRET})
    exchanges: list[Exchange] = field(default_factory=list)
    lines: list[LogLine] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    test_id: str = "<outside any test>"
    _handler: _RecordingHandler | None = field(default=None, init=False)
    _original: Callable[..., Coroutine[Any, Any, httpx.Response]] | None = field(
        default=None, init=False
    )
    _levels: dict[str, int] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    # --- recording ------------------------------------------------------------

    def install(self) -> None:
        """Wrap the ASGI transport and attach the log handler."""
        assert self._original is None, "already installed"
        original = httpx.ASGITransport.handle_async_request
        self._original = original
        recorder = self

        async def handle_async_request(
            transport: httpx.ASGITransport, request: httpx.Request
        ) -> httpx.Response:
            assert isinstance(request.stream, httpx.AsyncByteStream)
            sent = _TeeStream(request.stream)
            request.stream = sent
            response = await original(transport, request)
            assert isinstance(response.stream, httpx.AsyncByteStream)
            body = b"".join([chunk async for chunk in response.stream])
            response.stream = httpx.ByteStream(body)
            recorder.record_exchange(transport, request, b"".join(sent.chunks), response, body)
            return response

        httpx.ASGITransport.handle_async_request = handle_async_request  # type: ignore[method-assign, assignment]
        self._handler = _RecordingHandler(self)
        # The service logs at INFO (one line per request): make sure those
        # records exist, unless someone configured the level on purpose.
        service = logging.getLogger(LOGGER_NAME)
        if service.level == logging.NOTSET:
            self._levels[LOGGER_NAME] = service.level
            service.setLevel(logging.DEBUG)
        self.attach()

    def attach(self) -> None:
        """(Re)attach the handler: ``configure_logging`` replaces the service's handlers."""
        if self._handler is None:
            return
        for name in LOGGERS:
            logger = logging.getLogger(name)
            if self._handler not in logger.handlers:
                logger.addHandler(self._handler)

    def uninstall(self) -> None:
        if self._original is not None:
            httpx.ASGITransport.handle_async_request = self._original  # type: ignore[method-assign]
            self._original = None
        if self._handler is not None:
            for name in LOGGERS:
                logging.getLogger(name).removeHandler(self._handler)
            self._handler = None
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._levels.clear()

    def record_exchange(
        self,
        transport: httpx.ASGITransport,
        request: httpx.Request,
        sent: bytes,
        response: httpx.Response,
        body: bytes,
    ) -> None:
        token = _credential(request.headers.get("authorization"))
        secret = _app_secret(transport.app)
        exchange = Exchange(
            test_id=self.test_id,
            method=request.method,
            url=str(request.url),
            status=response.status_code,
            headers=tuple(response.headers.multi_items()),
            body=body.decode("utf-8", "replace"),
            token=token,
            echoed=_request_echoes(request, sent, token),
        )
        with self._lock:
            if secret is not None and len(set(secret)) >= MIN_SECRET_DISTINCT:
                self.secrets.add(secret)
            if token is not None:
                fingerprint = _fingerprint(token)
                if fingerprint is not None:
                    self.tokens[fingerprint] = token
            self.exchanges.append(exchange)

    def record_log(self, line: LogLine) -> None:
        with self._lock:
            self.lines.append(line)

    def mark(self) -> Mark:
        with self._lock:
            return Mark(len(self.exchanges), len(self.lines))

    # --- scanning -------------------------------------------------------------

    def scan(self, since: Mark | None = None) -> list[Leak]:
        """Every leak in what was recorded (after ``since``, if given)."""
        start = since or Mark(0, 0)
        with self._lock:
            exchanges = self.exchanges[start.exchanges :]
            lines = self.lines[start.lines :]
            secrets = sorted(self.secrets)
            tokens = dict(self.tokens)
        masker = _Masker(secrets, tokens.values())
        leaks: list[Leak] = []
        for exchange in exchanges:
            texts = [("body", exchange.body)] + [
                (f"header {name}", value) for name, value in exchange.headers
            ]
            for part, text in texts:
                where = f"{part} of the {exchange.label}"
                leaks += _scan_text(
                    text,
                    test_id=exchange.test_id,
                    where=where,
                    secrets=secrets,
                    tokens=tokens,
                    masker=masker,
                    is_error=exchange.status >= 400,
                    echoed=exchange.echoed,
                )
        for line in lines:
            leaks += _scan_text(
                line.text,
                test_id=line.test_id,
                where=f"a log line of {line.logger or 'the root logger'}",
                secrets=secrets,
                tokens=tokens,
                masker=masker,
                is_error=True,
                echoed=line.echoed,
            )
        return leaks


class _RecordingHandler(logging.Handler):
    """Keeps each record once, however many of the watched loggers it passes."""

    def __init__(self, recorder: LeakRecorder) -> None:
        super().__init__(level=logging.NOTSET)
        self.recorder = recorder
        self.json = JsonFormatter()
        self.plain = logging.Formatter()
        self._seen: weakref.WeakSet[logging.LogRecord] = weakref.WeakSet()

    def emit(self, record: logging.LogRecord) -> None:
        if record in self._seen:
            return
        self._seen.add(record)
        try:
            text = self.json.format(record)
            # JsonFormatter leaves exception text out on purpose; another
            # handler (the root's, uvicorn's) would print it, so scan it too.
            if record.exc_info:
                text += "\n" + self.plain.formatException(record.exc_info)
            if record.stack_info:
                text += "\n" + self.plain.formatStack(record.stack_info)
        except Exception as error:
            text = f"<unformattable record {record.name}: {type(error).__name__}>"
        echoed = tuple(
            str(getattr(record, name))
            for name in _ECHOED_LOG_FIELDS
            if getattr(record, name, None) is not None
        )
        self.recorder.record_log(LogLine(self.recorder.test_id, record.name, text, echoed))


class _Masker:
    """Replaces secrets and tokens in an excerpt, so a report never shows one."""

    def __init__(self, secrets: Iterable[str], tokens: Iterable[str]) -> None:
        self._replacements = [(secret, _SECRET_MASK) for secret in secrets if secret]
        self._replacements += [
            (part, _TOKEN_MASK) for token in tokens for part in _RUN.findall(token)
        ]

    def __call__(self, text: str) -> str:
        for value, mask in self._replacements:
            text = text.replace(value, mask)
        return text.replace("\n", "\\n")


def _scan_text(
    text: str,
    *,
    test_id: str,
    where: str,
    secrets: list[str],
    tokens: dict[str, str],
    masker: _Masker,
    is_error: bool,
    echoed: tuple[str, ...],
) -> list[Leak]:
    leaks: list[Leak] = []

    def leak(what: str, start: int, end: int, source: str = text) -> None:
        excerpt = source[max(0, start - _EXCERPT) : end + _EXCERPT]
        leaks.append(Leak(test_id, where, what, masker(excerpt)))

    for secret in secrets:
        position = text.find(secret)
        # A client may send the secret's text as its own data (a title, a
        # token's ``sub``): the service repeating it back is no leak.
        client_sent_it = any(secret in value for value in echoed)
        if secret and position >= 0 and not client_sent_it:
            leak("the JWT secret", position, position + len(secret))
    for match in _RUN.finditer(text):
        if match.group() in tokens:
            leak("a bearer token that was sent", match.start(), match.end())
    cleaned = _unescaped(_without(text, echoed))
    found = (_TRACEBACK if is_error else _TRACEBACK_STRICT).search(cleaned)
    if found:
        leak("a traceback", found.start(), found.end(), cleaned)
    if is_error:
        for pattern in SQL_PATTERNS:
            found = pattern.search(cleaned)
            if found:
                leak(f"SQL text (/{pattern.pattern}/)", found.start(), found.end(), cleaned)
    return leaks


def _unescaped(text: str) -> str:
    """JSON escapes undone, so ``\\nFROM`` and ``File \\"x\\"`` read as they would on a terminal."""
    for escaped, plain in (("\\n", "\n"), ("\\r", "\r"), ("\\t", "\t"), ('\\"', '"')):
        text = text.replace(escaped, plain)
    return text


def _without(text: str, echoed: tuple[str, ...]) -> str:
    """``text`` minus what the client sent itself (path, query, body strings)."""
    for value in sorted(echoed, key=len, reverse=True):
        text = text.replace(value, " ")
        escaped = orjson.dumps(value).decode()[1:-1]
        if escaped != value:
            text = text.replace(escaped, " ")
    return text


def _credential(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    return credential.strip() or scheme or None


def _fingerprint(token: str) -> str | None:
    runs = _RUN.findall(token)
    return runs[-1] if runs else None


def _app_secret(app: Any) -> str | None:
    """The JWT secret of a taskvault app (best effort: any ASGI app may be wrapped)."""
    try:
        secret = app.state.container.settings().jwt_secret
    except Exception:
        return None
    value = secret.get_secret_value() if secret is not None else None
    return value if isinstance(value, str) else None


def _request_echoes(request: httpx.Request, sent: bytes, token: str | None) -> tuple[str, ...]:
    """What the client sent that an honest response may repeat.

    The path and query (a problem's ``instance``), header values
    (``X-Request-ID``), the body and the strings in it (a 422's ``loc``), and
    the claims of the token (the ``sub`` is the task's ``user_id``).
    """
    echoes = {request.url.path, request.url.raw_path.decode("ascii", "replace")}
    if request.url.query:
        echoes.add(request.url.query.decode("ascii", "replace"))
    echoes.update(value for name, value in request.headers.items() if name != "authorization")
    if sent:
        echoes.add(sent.decode("utf-8", "replace"))
        with suppress(orjson.JSONDecodeError):
            echoes.update(_strings(orjson.loads(sent)))
    if token is not None and token.count(".") == 2:
        payload = token.split(".")[1]
        with suppress(ValueError, orjson.JSONDecodeError):
            claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            echoes.update(_strings(claims))
    return tuple(value for value in echoes if len(value) >= 3)


class _TeeStream(httpx.AsyncByteStream):
    """The request body as the app reads it, chunk by chunk, kept on the side."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner
        self.chunks: list[bytes] = []

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.chunks.append(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@contextmanager
def recording() -> Iterator[LeakRecorder]:
    """A recorder installed for the duration of the block."""
    recorder = LeakRecorder()
    recorder.install()
    try:
        yield recorder
    finally:
        recorder.uninstall()


def format_leaks(leaks: list[Leak], limit: int = 50) -> str:
    lines = [str(leak) for leak in leaks[:limit]]
    if len(leaks) > limit:
        lines.append(f"... and {len(leaks) - limit} more")
    return "\n".join(lines)


# --- the pytest plugin ---------------------------------------------------------

_RECORDER = pytest.StashKey[LeakRecorder]()
_LEAKS = pytest.StashKey[list[Leak]]()


def session_recorder(config: pytest.Config) -> LeakRecorder | None:
    """The session's recorder when this plugin is active, else None."""
    return config.stash.get(_RECORDER, None)


def pytest_sessionstart(session: pytest.Session) -> None:
    recorder = LeakRecorder()
    recorder.install()
    session.config.stash[_RECORDER] = recorder


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    recorder = session_recorder(item.config)
    if recorder is None:
        return (yield)
    recorder.test_id = item.nodeid
    recorder.attach()
    try:
        return (yield)
    finally:
        recorder.test_id = "<between tests>"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    recorder = session_recorder(item.config)
    if recorder is not None:
        recorder.attach()
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    recorder = session_recorder(session.config)
    if recorder is None:
        return
    recorder.test_id = "<session teardown>"
    recorder.uninstall()
    leaks = recorder.scan()
    session.config.stash[_LEAKS] = leaks
    if leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    recorder = session_recorder(config)
    leaks = config.stash.get(_LEAKS, None)
    if recorder is None or leaks is None:
        return
    summary = (
        f"leakscan: {len(recorder.exchanges)} responses and {len(recorder.lines)} log lines "
        f"scanned, {len(leaks)} leak(s)"
    )
    if not leaks:
        terminalreporter.write_line(summary)
        return
    terminalreporter.section("leakscan: secrets, tokens, tracebacks or SQL leaked", red=True)
    terminalreporter.write_line(format_leaks(leaks))
    terminalreporter.write_line(summary, red=True)
