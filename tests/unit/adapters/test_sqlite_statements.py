"""The SQLite store's own conversions read what SQLAlchemy's processors read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from adapters.sql.tables import UTCDateTime
from adapters.sqlite.statements import DIALECT, utc_instant

_TYPE = UTCDateTime().dialect_impl(DIALECT)
_BIND = _TYPE.bind_processor(DIALECT)
_LOAD = _TYPE.result_processor(DIALECT, None)
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
_INSTANTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES
)


@given(_INSTANTS)
def test_an_instant_reads_as_sqlalchemys_processor_reads_it(instant: datetime) -> None:
    assert _BIND is not None
    assert _LOAD is not None
    stored = _BIND(instant)
    assert utc_instant(stored) == _LOAD(stored) == instant
    assert utc_instant(stored).tzinfo is UTC
