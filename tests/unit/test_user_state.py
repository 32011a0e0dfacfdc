"""Per-user state: the storage form round-trips (every field, through JSON too), the dedupe
window is bounded and remembers the latest ids by hash, profile data merges field by field,
and state keys are workspace-scoped and injective."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given
from hypothesis import strategies as st

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.events import Event, UserProfile
from sme.core.user_state import (
    DEDUPE_WINDOW,
    Enrollment,
    Past,
    Profile,
    Touch,
    UserState,
    event_fingerprint,
    merge_profile,
    state_key,
)

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
ms = st.integers(min_value=0, max_value=7_258_118_400_000)  # 1970 .. 2200
small = st.integers(min_value=0, max_value=10_000)
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
enrollments = st.builds(
    Enrollment,
    config_id=identifiers,
    version=st.integers(min_value=1, max_value=10**6),
    arm=st.sampled_from(Arm),
    seq=st.integers(min_value=1, max_value=10**6),
    enrolled_ms=ms,
    step=st.integers(min_value=0, max_value=49),
    step_id=identifiers,
    step_ms=ms,
    due_ms=ms,
    sent=small,
    seen=st.lists(st.text(min_size=1, max_size=12), max_size=8).map(tuple),
    deferrals=small,
)
touches = st.builds(
    Touch,
    at_ms=ms,
    config_id=identifiers,
    step_id=identifiers,
    channel=st.one_of(st.none(), st.sampled_from(Channel)),
    command=st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
    arm=st.sampled_from(Arm),
    variant=identifiers,
    group=st.text(max_size=20),
    rewarded=st.booleans(),
)
pasts = st.builds(
    Past, enrolled_ms=ms, seq=st.integers(min_value=1, max_value=10**6), converted=st.booleans()
)
states = st.builds(
    UserState,
    workspace_id=identifiers,
    user_id=identifiers,
    profile=profiles,
    recent_events=st.lists(identifiers.map(event_fingerprint), max_size=DEDUPE_WINDOW).map(tuple),
    events_seen=st.integers(min_value=0, max_value=2**40),
    last_event_at=st.one_of(st.none(), moments),
    enrollments=st.lists(enrollments, max_size=4).map(tuple),
    past=st.dictionaries(identifiers, pasts, max_size=4),
    touches=st.lists(touches, max_size=6).map(tuple),
    affinity=st.dictionaries(st.sampled_from(Channel), st.tuples(small, small)),
    hours=st.dictionaries(st.integers(min_value=0, max_value=23), small),
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
    state = UserState("ws", "u", last_event_at=paris)

    restored = UserState.from_dict(state.to_dict())

    assert restored.last_event_at == paris
    assert restored.last_event_at is not None
    assert restored.last_event_at.utcoffset() == timedelta(0)


def test_a_minimal_stored_dict_reads_as_a_fresh_state() -> None:
    assert UserState.from_dict({"w": "ws", "u": "u"}) == UserState.new("ws", "u")


def test_a_fresh_state_stores_only_its_ids_and_counter() -> None:
    assert UserState.new("ws", "u").to_dict() == {"w": "ws", "u": "u", "n": 0}


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    )
)
def test_storage_keeps_a_timestamp_to_within_a_millisecond(moment: datetime) -> None:
    restored = UserState.from_dict(UserState("ws", "u", last_event_at=moment).to_dict())

    assert restored.last_event_at is not None
    assert abs(restored.last_event_at - moment) <= timedelta(milliseconds=1)


def test_a_millisecond_precise_timestamp_survives_the_storage_round_trip() -> None:
    moment = datetime(2004, 6, 6, 13, 0, 43, 90_000, tzinfo=UTC)

    restored = UserState.from_dict(UserState("ws", "u", last_event_at=moment).to_dict())

    assert restored.last_event_at == moment


def test_a_holdout_touch_without_a_channel_survives_the_round_trip() -> None:
    touch = Touch(1, "cfg", "s1", None, "", Arm.HOLDOUT, "default")
    state = UserState("ws", "u", touches=(touch,))

    assert UserState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))).touches == (touch,)


# --- dedupe window --------------------------------------------------------------------------


@given(st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=3), max_size=300))
def test_the_dedupe_window_stays_bounded_and_remembers_the_latest_ids(ids: list[str]) -> None:
    state = UserState.new("ws-acme", "user-1")
    for event_id in ids:
        state = state.observe(make_event(event_id))
        assert len(state.recent_events) <= DEDUPE_WINDOW

    latest = ids[-min(len(ids), DEDUPE_WINDOW) :] if ids else []
    assert all(state.has_seen(event_id) for event_id in latest)
    assert state.events_seen == len(ids)


def test_after_more_than_a_window_of_events_only_the_latest_window_is_remembered() -> None:
    state = UserState.new("ws-acme", "user-1")
    for i in range(DEDUPE_WINDOW + 10):
        state = state.observe(make_event(f"evt-{i}"))

    assert len(state.recent_events) == DEDUPE_WINDOW
    assert state.has_seen(f"evt-{DEDUPE_WINDOW + 9}")
    assert state.has_seen("evt-10")
    assert not state.has_seen("evt-9")
    assert not state.has_seen("evt-0")


def test_the_dedupe_window_stores_short_hashes_not_the_event_ids() -> None:
    event_id = "producer-42/" + "x" * 100
    state = UserState.new("ws-acme", "user-1").observe(make_event(event_id))

    stored = orjson.dumps(state.to_dict())

    assert event_id.encode() not in stored
    assert state.recent_events == (event_fingerprint(event_id),)
    assert len(event_fingerprint(event_id)) == 12
    assert UserState.from_dict(orjson.loads(stored)).has_seen(event_id)


def test_an_unseen_event_id_is_not_reported_as_seen() -> None:
    state = UserState.new("ws-acme", "user-1").observe(make_event("evt-1"))

    assert state.has_seen("evt-1")
    assert not state.has_seen("evt-2")


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


# --- enrollments ----------------------------------------------------------------------------


def _enrollment(config_id: str, due_ms: int) -> Enrollment:
    return Enrollment(config_id, 1, Arm.ADAPTIVE, 1, 0, 0, "s1", 0, due_ms)


def test_the_next_due_time_is_the_earliest_enrollment_due_time() -> None:
    state = UserState.new("ws", "u")
    assert state.next_due_ms() is None

    state = state.with_enrollment(_enrollment("a", 500)).with_enrollment(_enrollment("b", 200))

    assert state.next_due_ms() == 200
    assert state.without_enrollment("b").next_due_ms() == 500


def test_a_user_has_at_most_one_enrollment_per_config() -> None:
    state = UserState.new("ws", "u").with_enrollment(_enrollment("a", 500))

    state = state.with_enrollment(_enrollment("a", 900))

    assert len(state.enrollments) == 1
    assert state.enrollment("a") == _enrollment("a", 900)
    assert state.enrollment("missing") is None


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


def test_an_explicitly_null_attribute_is_kept_as_a_known_null() -> None:
    merged = merge_profile(KNOWN, make_event(user=UserProfile(attributes={"plan": None})))

    assert merged.attributes == {"plan": None, "country": "FR"}


def test_observing_an_event_merges_its_profile_into_the_state() -> None:
    state = UserState("ws-acme", "user-1", profile=KNOWN)

    state = state.observe(make_event(user=UserProfile(consent={Channel.IN_APP: True})))

    assert state.profile.consent == {**KNOWN.consent, Channel.IN_APP: True}
    assert state.profile.timezone == KNOWN.timezone


@given(profiles, profiles)
def test_merging_never_forgets_a_known_key(known: Profile, incoming: Profile) -> None:
    ev = make_event(
        user=UserProfile(
            timezone=incoming.timezone, attributes=incoming.attributes, consent=incoming.consent
        )
    )

    merged = merge_profile(known, ev)

    assert merged.attributes == {**known.attributes, **incoming.attributes}
    assert merged.consent == {**known.consent, **incoming.consent}
    assert merged.timezone == (incoming.timezone or known.timezone)


# --- keys -----------------------------------------------------------------------------------


def test_the_same_user_id_in_two_workspaces_has_two_state_keys() -> None:
    assert state_key("ws-a", "user-1") != state_key("ws-b", "user-1")


def test_the_state_key_is_stable_for_a_workspace_and_user() -> None:
    assert state_key("ws-a", "user-1") == state_key("ws-a", "user-1")
    assert state_key("ws-a", "user-1") != state_key("ws-a", "user-2")


separator_heavy = st.text(alphabet="ab1:/\x1f", min_size=1, max_size=8)


@given(
    st.one_of(identifiers, separator_heavy),
    st.one_of(identifiers, separator_heavy),
    st.one_of(identifiers, separator_heavy),
    st.one_of(identifiers, separator_heavy),
)
def test_distinct_workspace_user_pairs_never_share_a_state_key(
    w1: str, u1: str, w2: str, u2: str
) -> None:
    if (w1, u1) != (w2, u2):
        assert state_key(w1, u1) != state_key(w2, u2)


def test_ids_containing_separators_do_not_collide_across_workspaces() -> None:
    # Every pair below would collide under a plain "<workspace>/<user>" or ":"-joined key.
    pairs = [("ws/shared", "user"), ("ws", "shared/user"), ("1:ws", "u"), ("ws:1", "u")]
    pairs += [("ws\x1fshared", "user"), ("ws", "shared\x1fuser")]

    keys = {state_key(w, u) for w, u in pairs}

    assert len(keys) == len(pairs)
