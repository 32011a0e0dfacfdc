"""Per-user state: the storage form round-trips, the dedupe window stays bounded while
remembering the latest ids, profile data merges field by field, keys are workspace-scoped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given
from hypothesis import strategies as st

from sme.contracts.channels import Channel
from sme.contracts.events import Event, UserProfile
from sme.core.user_state import DEDUPE_WINDOW, Profile, UserState, merge_profile, state_key

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_event(event_id: str = "evt-1", **overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "workspace_id": "ws-acme",
        "user_id": "user-1",
        "type": "opened",
        "occurred_at": T0,
    }
    fields.update(overrides)
    return Event.model_validate(fields)


# --- strategies -----------------------------------------------------------------------------

identifiers = st.text(min_size=1, max_size=40)
attribute_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
profiles = st.builds(
    Profile,
    timezone=st.one_of(st.none(), st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata"])),
    attributes=st.dictionaries(st.text(max_size=10), attribute_values, max_size=8),
    consent=st.dictionaries(st.sampled_from(Channel), st.booleans()),
)
# Millisecond precision: the storage form is integer epoch milliseconds.
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    # Fixed offsets: aware datetimes in a DST fold never compare equal across zones (PEP 495).
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
states = st.builds(
    UserState,
    workspace_id=identifiers,
    user_id=identifiers,
    profile=profiles,
    recent_event_ids=st.lists(identifiers, max_size=DEDUPE_WINDOW).map(tuple),
    events_seen=st.integers(min_value=0, max_value=2**40),
    last_event_at=st.one_of(st.none(), moments),
    welcomed_at=st.one_of(st.none(), moments),
)


# --- storage form ---------------------------------------------------------------------------


@given(states)
def test_a_state_survives_the_storage_round_trip(state: UserState) -> None:
    assert UserState.from_dict(state.to_dict()) == state


@given(states)
def test_a_state_survives_the_storage_round_trip_through_json(state: UserState) -> None:
    stored = orjson.loads(orjson.dumps(state.to_dict()))

    assert UserState.from_dict(stored) == state


def test_a_stored_state_is_read_back_in_utc() -> None:
    paris = datetime(2024, 5, 1, 14, 0, tzinfo=ZoneInfo("Europe/Paris"))
    state = UserState("ws", "u", last_event_at=paris, welcomed_at=paris)

    restored = UserState.from_dict(state.to_dict())

    assert restored.last_event_at == paris
    assert restored.last_event_at is not None
    assert restored.last_event_at.utcoffset() == timedelta(0)


def test_a_minimal_stored_dict_reads_as_a_fresh_state() -> None:
    assert UserState.from_dict({"w": "ws", "u": "u"}) == UserState.new("ws", "u")


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    )
)
def test_storage_keeps_a_timestamp_to_within_a_millisecond(moment: datetime) -> None:
    restored = UserState.from_dict(UserState("ws", "u", welcomed_at=moment).to_dict())

    assert restored.welcomed_at is not None
    assert abs(restored.welcomed_at - moment) <= timedelta(milliseconds=1)


def test_a_millisecond_precise_timestamp_survives_the_storage_round_trip() -> None:
    moment = datetime(2004, 6, 6, 13, 0, 43, 90_000, tzinfo=UTC)

    restored = UserState.from_dict(UserState("ws", "u", last_event_at=moment).to_dict())

    assert restored.last_event_at == moment


# --- dedupe window --------------------------------------------------------------------------


@given(st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=3), max_size=300))
def test_the_dedupe_window_stays_bounded_and_remembers_the_latest_ids(ids: list[str]) -> None:
    state = UserState.new("ws-acme", "user-1")
    for event_id in ids:
        state = state.observe(make_event(event_id))
        assert len(state.recent_event_ids) <= DEDUPE_WINDOW

    latest = ids[-min(len(ids), DEDUPE_WINDOW) :] if ids else []
    assert all(state.has_seen(event_id) for event_id in latest)
    assert state.events_seen == len(ids)


def test_after_more_than_a_window_of_events_only_the_latest_window_is_remembered() -> None:
    state = UserState.new("ws-acme", "user-1")
    for i in range(DEDUPE_WINDOW + 10):
        state = state.observe(make_event(f"evt-{i}"))

    assert len(state.recent_event_ids) == DEDUPE_WINDOW
    assert state.has_seen(f"evt-{DEDUPE_WINDOW + 9}")
    assert state.has_seen("evt-10")
    assert not state.has_seen("evt-9")
    assert not state.has_seen("evt-0")


def test_observing_an_event_does_not_change_the_original_state() -> None:
    state = UserState.new("ws-acme", "user-1")

    state.observe(make_event("evt-1"))

    assert state == UserState.new("ws-acme", "user-1")


# --- observation ----------------------------------------------------------------------------


def test_the_last_event_time_only_moves_forward_and_is_kept_in_utc() -> None:
    later = datetime(2024, 5, 1, 16, 0, tzinfo=ZoneInfo("Europe/Paris"))
    state = UserState.new("ws-acme", "user-1").observe(make_event("e1", occurred_at=later))

    state = state.observe(make_event("e2", occurred_at=later - timedelta(hours=1)))

    assert state.last_event_at == later
    assert state.last_event_at is not None
    assert state.last_event_at.utcoffset() == timedelta(0)
    assert state.events_seen == 2


# --- profile merge --------------------------------------------------------------------------


KNOWN = Profile(
    timezone="Europe/Paris",
    attributes={"plan": "free", "country": "FR"},
    consent={Channel.EMAIL: True, Channel.SMS: False},
)


def test_newer_profile_fields_win_and_absent_ones_keep_what_was_known() -> None:
    incoming = UserProfile(
        attributes={"plan": "pro", "seats": 3}, consent={Channel.SMS: True, Channel.PUSH: False}
    )

    merged = merge_profile(KNOWN, make_event(user=incoming))

    assert merged.timezone == "Europe/Paris"
    assert merged.attributes == {"plan": "pro", "country": "FR", "seats": 3}
    assert merged.consent == {Channel.EMAIL: True, Channel.SMS: True, Channel.PUSH: False}


def test_a_new_timezone_replaces_the_old_one() -> None:
    merged = merge_profile(KNOWN, make_event(user=UserProfile(timezone="Asia/Tokyo")))

    assert merged.timezone == "Asia/Tokyo"
    assert merged.attributes == KNOWN.attributes
    assert merged.consent == KNOWN.consent


def test_a_consent_withdrawal_overrides_an_earlier_grant() -> None:
    merged = merge_profile(KNOWN, make_event(user=UserProfile(consent={Channel.EMAIL: False})))

    assert merged.consent[Channel.EMAIL] is False


def test_an_event_without_profile_data_leaves_the_profile_as_it_was() -> None:
    assert merge_profile(KNOWN, make_event(user=None)) == KNOWN


def test_observing_an_event_merges_its_profile_into_the_state() -> None:
    state = UserState("ws-acme", "user-1", profile=KNOWN)

    state = state.observe(make_event(user=UserProfile(consent={Channel.IN_APP: True})))

    assert state.profile.consent == {**KNOWN.consent, Channel.IN_APP: True}
    assert state.profile.timezone == KNOWN.timezone


# --- keys -----------------------------------------------------------------------------------


def test_the_same_user_id_in_two_workspaces_has_two_state_keys() -> None:
    assert state_key("ws-a", "user-1") != state_key("ws-b", "user-1")


def test_the_state_key_is_stable_for_a_workspace_and_user() -> None:
    assert state_key("ws-a", "user-1") == state_key("ws-a", "user-1")
    assert state_key("ws-a", "user-1") != state_key("ws-a", "user-2")


@given(identifiers, identifiers, identifiers, identifiers)
def test_distinct_plain_workspace_user_pairs_never_share_a_state_key(
    w1: str, u1: str, w2: str, u2: str
) -> None:
    pairs_differ = (w1, u1) != (w2, u2)
    plain = all("\x1f" not in part for part in (w1, u1, w2, u2))

    if pairs_differ and plain:
        assert state_key(w1, u1) != state_key(w2, u2)


def test_ids_containing_the_separator_do_not_collide_across_workspaces() -> None:
    # Both ids are accepted by the Event model (no pattern restricts them).
    a = make_event(workspace_id="ws\x1fshared", user_id="user")
    b = make_event(workspace_id="ws", user_id="shared\x1fuser")

    assert state_key(a.workspace_id, a.user_id) != state_key(b.workspace_id, b.user_id)
