"""The notifier's payloads: many user ids to a NOTIFY, none lost, each accepted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.asyncpg.notifier import PAYLOAD_MAX_BYTES, SEPARATOR, payloads, users_in
from domain.task import OWNER_MAX_LENGTH, contains_control_characters

owners = st.text(min_size=1, max_size=OWNER_MAX_LENGTH).filter(
    lambda owner: not contains_control_characters(owner)
)


@given(st.lists(owners, max_size=200))
def test_every_user_arrives_once_in_order_in_payloads_postgresql_accepts(users: list[str]) -> None:
    sent = list(payloads(users))
    assert [user for payload in sent for user in users_in(payload)] == users
    assert all(len(payload.encode()) < 8000 for payload in sent)
    assert all(len(payload.encode()) <= PAYLOAD_MAX_BYTES for payload in sent)


def test_a_full_payload_starts_the_next() -> None:
    # The longest ids of four-byte characters: 1,021 bytes with the separator,
    # so that 7 fit in a payload and an 8th would not.
    users = [chr(0x1F389) * (OWNER_MAX_LENGTH - 1) + str(n % 10) for n in range(15)]
    sent = list(payloads(users))
    assert [len(users_in(payload)) for payload in sent] == [7, 7, 1]


def test_an_older_releases_payload_is_its_one_user() -> None:
    assert users_in("alice") == ["alice"]
    assert users_in(SEPARATOR.join(["alice", "bob"])) == ["alice", "bob"]
