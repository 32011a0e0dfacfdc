"""The preview runner: the real core on a virtual clock, traces written out by hand."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.events import UserProfile
from sme.contracts.preview import MAX_TIMELINE, PreviewEvent, PreviewRequest
from sme.contracts.sequences import SequenceConfig, Status
from sme.core import preview as preview_module
from sme.core.preview import Preview, command_for_test_send, run_preview
from tests.unit.builders import NO_EXPERIMENT, T0, USER, WS, config, msg_step, workspace

DAY = timedelta(days=1)
HORIZON = T0 + timedelta(days=400)


def sample(**overrides: Any) -> SequenceConfig:
    """Welcome; a day later a branch on a click (to the tips) or else a nudge; tips two days
    after; a purchase is the goal."""
    data: dict[str, Any] = {
        "steps": [
            msg_step("welcome"),
            {
                "id": "check",
                "kind": "branch",
                "wait": "P1D",
                "branches": [{"event_type": "clicked", "goto": "tips"}],
            },
            msg_step("nudge"),
            msg_step("tips", wait="P2D"),
        ],
        "exit": {"goal": {"event_type": "purchased", "value_property": "amount"}},
        "experiment": NO_EXPERIMENT,
    }
    data.update(overrides)
    return config(**data)


def timeline(*items: tuple[str, datetime, dict[str, Any]]) -> list[PreviewEvent]:
    return [PreviewEvent(type=t, occurred_at=at, **fields) for t, at, fields in items]


def run(cfg: SequenceConfig, events: list[PreviewEvent], **kw: Any) -> Preview:
    return run_preview(
        cfg,
        kw.pop("ws", workspace()),
        USER,
        kw.pop("profile", UserProfile()),
        events,
        kw.pop("start", T0),
        kw.pop("horizon_end", HORIZON),
        kw.pop("seed", 0),
        **kw,
    )


def brief(preview: Preview) -> list[tuple[str, datetime, str, str]]:
    return [(e.type.value, e.at, e.step_id, str(e.reason_code)) for e in preview.trace]


def test_a_clicker_is_branched_to_the_tips_and_converts_before_them() -> None:
    preview = run(
        sample(),
        timeline(
            ("signed_up", T0, {}),
            ("clicked", T0 + timedelta(hours=2), {"channel": Channel.EMAIL}),
            ("purchased", T0 + DAY + timedelta(hours=1), {"properties": {"amount": 30}}),
        ),
    )
    assert brief(preview) == [
        ("event_received", T0, "", ""),
        ("enrolled", T0, "welcome", ""),
        ("exposure", T0, "welcome", ""),
        ("command_emitted", T0, "welcome", ""),
        ("event_received", T0 + timedelta(hours=2), "", ""),
        ("feedback", T0 + timedelta(hours=2), "welcome", ""),
        ("step_branched", T0 + DAY, "check", "branched"),
        ("event_received", T0 + DAY + timedelta(hours=1), "", ""),
        ("conversion", T0 + DAY + timedelta(hours=1), "welcome", ""),
        ("enrollment_exited", T0 + DAY + timedelta(hours=1), "tips", "goal_reached"),
    ]
    sent = preview.trace[3]
    assert sent.command is not None
    assert (sent.command.template, sent.command.variant, sent.command.channel) == (
        "tpl-welcome",
        "default",
        Channel.EMAIL,
    )
    assert sent.command.test is False
    assert preview.trace[6].details["goto"] == "tips"
    assert preview.trace[8].value == 30.0
    outcome = preview.outcome
    assert (outcome.enrolled, outcome.arm, outcome.active, outcome.converted) == (
        True,
        Arm.ADAPTIVE,
        False,
        True,
    )
    assert outcome.messages == 1
    assert outcome.ended_at == T0 + DAY + timedelta(hours=1)


def test_without_a_timeline_a_synthetic_entry_enrolls_and_the_holdout_walks_every_step() -> None:
    preview = run(sample(), [], arm=Arm.HOLDOUT)
    assert brief(preview) == [
        ("event_received", T0, "", ""),
        ("enrolled", T0, "welcome", ""),
        ("exposure", T0, "welcome", ""),
        ("message_suppressed", T0, "welcome", "holdout"),
        ("step_skipped", T0 + DAY, "check", "branched"),
        ("message_suppressed", T0 + DAY, "nudge", "holdout"),
        ("message_suppressed", T0 + 3 * DAY, "tips", "holdout"),
        ("enrollment_exited", T0 + 3 * DAY, "tips", "completed"),
    ]
    assert preview.trace[0].event_id == "preview-entry"
    assert preview.outcome.arm is Arm.HOLDOUT
    assert preview.outcome.messages == 0
    assert not preview.outcome.horizon_reached


def test_quiet_hours_defer_a_step_with_their_reason_code() -> None:
    quiet = workspace(quiet_hours={"start": "09:00", "end": "11:00"})  # T0 is 10:00 UTC
    preview = run(config(steps=[msg_step("s1")]), [], ws=quiet)
    assert brief(preview)[3:] == [
        ("step_deferred", T0, "s1", "quiet_hours"),
        ("command_emitted", T0 + timedelta(hours=1), "s1", ""),
        ("enrollment_exited", T0 + timedelta(hours=1), "s1", "completed"),
    ]


def test_the_horizon_stops_the_preview_with_the_user_still_enrolled() -> None:
    preview = run(sample(), [], horizon_end=T0 + timedelta(hours=12))
    assert [e.type.value for e in preview.trace][-1] == "command_emitted"
    outcome = preview.outcome
    assert outcome.active and outcome.horizon_reached
    assert (outcome.step_id, outcome.due_at) == ("check", T0 + DAY)


def test_a_preview_stops_after_its_bound_of_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preview_module, "MAX_DECISIONS", 2)
    preview = run(sample(), [])
    assert preview.outcome.truncated and preview.outcome.active
    assert not preview.outcome.horizon_reached
    assert preview.outcome.ended_at == T0 + DAY  # the signup, then the branch


def test_a_stopped_sequence_is_previewed_as_if_live_and_the_same_request_gives_the_same_trace() -> (
    None
):
    cfg = sample(
        status=Status.STOPPED.value,
        steps=[msg_step("s1", channels=["email", "push"], variants=["a", "b"])],
        experiment={"holdout_pct": 0, "baseline_pct": 0},
    )
    first = run(cfg, [], seed=5)
    assert first == run(cfg, [], seed=5)
    assert first.outcome.messages == 1


def test_the_arm_defaults_to_the_one_the_engine_assigns() -> None:
    everyone_baseline = sample(experiment={"holdout_pct": 0, "baseline_pct": 100})
    assert run(everyone_baseline, []).outcome.arm is Arm.BASELINE
    assert run(everyone_baseline, [], arm=Arm.ADAPTIVE).outcome.arm is Arm.ADAPTIVE


def test_a_never_enrolled_user_has_an_empty_outcome() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "filters": [{"key": "plan", "equals": "pro"}]}
    )
    preview = run(cfg, [], profile=UserProfile(attributes={"plan": "free"}))
    assert [e.type.value for e in preview.trace] == ["event_received"]
    assert not preview.outcome.enrolled and preview.outcome.arm is None


def test_timeline_events_outside_the_horizon_are_refused_with_their_location() -> None:
    with pytest.raises(ValidationError) as caught:
        PreviewRequest.model_validate_json(
            json.dumps(
                {
                    "user_id": "u",
                    "start": T0.isoformat(),
                    "horizon": "P1D",
                    "timeline": [
                        {"type": "signed_up", "occurred_at": T0.isoformat()},
                        {"type": "clicked", "occurred_at": (T0 + 2 * DAY).isoformat()},
                    ],
                }
            )
        )
    assert [e["loc"] for e in caught.value.errors()] == [("timeline", 1, "occurred_at")]


def test_a_timeline_is_bounded() -> None:
    event = {"type": "clicked", "occurred_at": T0.isoformat()}
    with pytest.raises(ValidationError) as caught:
        PreviewRequest.model_validate_json(
            json.dumps({"user_id": "u", "timeline": [event] * (MAX_TIMELINE + 1)})
        )
    assert caught.value.errors()[0]["loc"] == ("timeline",)


def test_a_test_send_command_is_the_cores_command_marked_test_with_a_unique_id() -> None:
    cfg = sample()
    step = cfg.steps[0]
    first = command_for_test_send(
        cfg, None, "qa-1", UserProfile(), step, Channel.EMAIL, "default", T0, "a"
    )
    second = command_for_test_send(
        cfg, None, "qa-1", UserProfile(), step, Channel.EMAIL, "default", T0, "b"
    )
    assert first.test and first.template == "tpl-welcome" and first.user_id == "qa-1"
    assert (first.workspace_id, first.config_id, first.step_id) == (WS, cfg.id, "welcome")
    assert first.command_id != second.command_id
