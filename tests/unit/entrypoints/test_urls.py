"""The URLs responses hand out are the ones Starlette's own URL methods would build."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote

from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from entrypoints.http import urls

_KEYS = st.sampled_from(["limit", "sort", "q", "cursor", "curs%6Fr", "cur+sor", "status", "x"])
_VALUES = st.text(max_size=8).map(lambda text: quote(text, safe=""))
_PAIRS = st.lists(st.tuples(_KEYS, _VALUES), max_size=6)
_HOSTS = st.sampled_from([None, "api.example.com", "127.0.0.1:8000", "[::1]:8443"])


def _request(pairs: list[tuple[str, str]], host: str | None, *, path: str) -> Request:
    headers = [] if host is None else [(b"host", host.encode())]
    query = "&".join(f"{key}={value}" for key, value in pairs)
    return Request(
        {
            "type": "http",
            "scheme": "https",
            "server": ("10.0.0.5", 8000),
            "path": path,
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "method": "GET",
        }
    )


@given(_PAIRS, _HOSTS, st.text(alphabet="abcXYZ019-_.", min_size=1, max_size=40))
def test_the_next_page_is_starlettes_include_query_params(
    pairs: list[tuple[str, str]], host: str | None, cursor: str
) -> None:
    request = _request(pairs, host, path="/api/me/tasks")
    expected = request.url.include_query_params(cursor=cursor)
    built = urls.with_cursor(request, cursor)
    base, _, query = built.partition("?")
    assert base == str(expected).partition("?")[0]
    # The same parameters; the kept ones in the client's own encoding.
    assert sorted(parse_qsl(query, keep_blank_values=True)) == sorted(
        parse_qsl(expected.query, keep_blank_values=True)
    )
    assert [value for key, value in parse_qsl(query) if key == "cursor"] == [cursor]


@given(_HOSTS)
def test_a_path_on_the_origin_is_starlettes_replace(host: str | None) -> None:
    request = _request([("limit", "5")], host, path="/api/me/tasks")
    path = "/api/alice/tasks/0190c3a4-0000-7000-8000-000000000000"
    assert urls.with_path(request, path) == str(request.url.replace(path=path, query=""))
