"""The simulator's worlds for issue 13: the default world is frozen, old scenarios keep their
results, worlds can change over time and price segments differently, variants can move opens
and conversions, and an oracle on the true rates gives each world its ceiling."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

import pytest
from pydantic import ValidationError

from sme.contracts.channels import Channel
from sme.core.lift import Lift
from sme.simulator.cli import main
from sme.simulator.oracle import conversion_probability, message_value
from sme.simulator.report import share_of_oracle
from sme.simulator.run import simulate
from sme.simulator.world import (
    Economics,
    Fatigue,
    HiddenUser,
    Scenario,
    load_scenario,
    regimes,
)

DEFAULT_SHA256 = "12dcb60ecb6f4afbea28a58a5c50d65aafa4a9cf4889ffa41c2667805ae8311a"


def _data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = load_scenario(name).model_dump(mode="json")
    return data


def _fixed_policy(scenario: Scenario) -> Scenario:
    """The scenario with fixed channel and variant policies and no send-time optimisation,
    so its figures depend on the world and the core's timing, not on the learning policy."""
    seq = scenario.sequence
    adaptive = seq.adaptive.model_copy(
        update={
            "channel_policy": "fixed",
            "variant_policy": "fixed",
            "send_time": seq.adaptive.send_time.model_copy(update={"enabled": False}),
        }
    )
    return scenario.model_copy(update={"sequence": seq.model_copy(update={"adaptive": adaptive})})


def _figures(summary: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    keys = ("users", "messages_total", "opens", "clicks", "conversions", "unsubscribes")
    return {arm: tuple(v[k] for k in keys) for arm, v in summary["arms"].items()}


# --- the frozen world -----------------------------------------------------------------------


def test_the_default_world_file_is_frozen() -> None:
    """Improving the world is not improving the policy: issue 13 records this hash."""
    text = resources.files("sme.simulator").joinpath("scenarios", "default.json").read_bytes()
    assert hashlib.sha256(text).hexdigest() == DEFAULT_SHA256


@pytest.mark.parametrize(
    ("name", "expected", "decisions"),
    [
        (
            "default",
            {
                "adaptive": (345, 1415, 199, 29, 13, 2),
                "baseline": (372, 1532, 202, 32, 11, 8),
                "holdout": (83, 0, 0, 0, 2, 0),
            },
            6966,
        ),
        (
            "fatigue",
            {
                "adaptive": (365, 2759, 251, 35, 9, 24),
                "baseline": (344, 2585, 254, 17, 7, 17),
                "holdout": (91, 0, 0, 0, 3, 0),
            },
            12224,
        ),
    ],
)
def test_existing_scenarios_keep_their_results(
    name: str, expected: dict[str, tuple[int, ...]], decisions: int
) -> None:
    """Figures measured before the world gained changes, variant effects and segment prices
    (fixed policies, so a change of the learning policy does not move them): the new world
    features cost nothing to a scenario that does not use them."""
    summary = simulate(_fixed_policy(load_scenario(name)), days=10, users=800, seed=3).summary()
    assert _figures(summary) == expected
    assert summary["core_decisions"] == decisions


# --- scenario format ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"day": 3, "segments": {"nobody": {}}}, ("changes", 0, "segments", "nobody")),
        ({"day": 3, "channels": {"sms": {"cost": 1}}}, ("changes", 0, "channels", "sms")),
        (
            {"day": 3, "segments": {"everyone": {"channels": {"email": {"open": 1.5}}}}},
            ("changes", 0, "segments", "everyone", "channels", "email", "open"),
        ),
        ({"day": 0}, ("changes", 0, "day")),
    ],
)
def test_a_bad_change_is_rejected_at_its_field_path(
    change: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    data = _data("null")
    data["channels"].pop("sms")
    for step in data["sequence"]["steps"]:
        step["channels"] = [c for c in step["channels"] if c != "sms"]
    data["segments"][0]["channels"].pop("sms")
    data["changes"] = [change]
    with pytest.raises(ValidationError) as info:
        Scenario.model_validate(data)
    assert any(tuple(e["loc"]) == loc for e in info.value.errors()), info.value.errors()


def test_changes_must_come_in_day_order() -> None:
    data = _data("null")
    data["changes"] = [{"day": 5}, {"day": 4}]
    with pytest.raises(ValidationError) as info:
        Scenario.model_validate(data)
    assert [tuple(e["loc"]) for e in info.value.errors()] == [("changes", 1, "day")]


def test_a_change_rescales_the_segment_and_keeps_the_rest() -> None:
    drift = load_scenario("drift")
    before, after = regimes(drift)
    assert after.start_day == drift.changes[0].day
    seg_before, seg_after = before.segments["everyone"], after.segments["everyone"]
    assert seg_before.open_factor[Channel.PUSH] == 1.0
    assert seg_after.open_factor[Channel.PUSH] == pytest.approx(0.06 / 0.35)
    assert seg_after.open_factor[Channel.EMAIL] == pytest.approx(0.30 / 0.12)
    assert seg_after.open_factor[Channel.IN_APP] == 1.0
    assert seg_before.variants["b"].click > 1 and seg_after.variants["a"].click > 1
    assert seg_after.variants["b"].click == 1


def test_segment_prices_reach_the_bill_but_not_the_core() -> None:
    """A segment's own price (e.g. international SMS) is in `spend`, the world's bill; the
    core's price list is per channel, so its `cost` keeps the channel price."""
    data = _data("null")
    data["segments"][0]["channels"]["email"]["cost"] = 0.5
    summary = simulate(Scenario.model_validate(data), days=3, users=300, seed=2).summary()
    baseline = summary["arms"]["baseline"]
    email = baseline["messages"]["email"]
    others = baseline["messages_total"] - email
    assert email > 0
    assert baseline["spend"] == pytest.approx(0.5 * email + 0.001 * others)
    assert baseline["cost"] == pytest.approx(0.001 * baseline["messages_total"])


def test_a_variant_can_move_opens() -> None:
    data = _data("null")
    data["variants"] = {v: {"open": 0.0} for s in data["sequence"]["steps"] for v in s["variants"]}
    summary = simulate(Scenario.model_validate(data), days=3, users=300, seed=2).summary()
    assert all(arm["opens"] == 0 for arm in summary["arms"].values())
    assert summary["arms"]["baseline"]["delivered"] > 0


# --- report: money and days -----------------------------------------------------------------


def test_net_value_is_conversion_value_minus_spend_minus_unsubscribes() -> None:
    data = _data("null")
    data["economics"] = {"conversion_value": 10.0, "unsubscribe_cost": 2.0}
    summary = simulate(Scenario.model_validate(data), days=5, users=600, seed=4).summary()
    for arm in summary["arms"].values():
        expected = 10.0 * arm["conversions"] - arm["spend"] - 2.0 * arm["unsubscribes"]
        assert arm["net_value"] == pytest.approx(expected, abs=1e-5)
        assert sum(arm["daily_conversions"]) == arm["conversions"]
        assert len(arm["daily_conversions"]) == 5
        if arm["conversions"]:
            assert arm["cost_per_conversion"] == pytest.approx(
                arm["spend"] / arm["conversions"], abs=1e-5
            )


# --- the oracle -----------------------------------------------------------------------------


def _user(**rates: float) -> HiddenUser:
    open_p = {ch: rates.get(f"{ch.value}_open", 0.0) for ch in Channel}
    click_p = {ch: rates.get(f"{ch.value}_click", 0.0) for ch in Channel}
    return HiddenUser(
        index=0,
        user_id="u",
        segment="everyone",
        timezone="UTC",
        active=frozenset(range(24)),
        attributes={},
        consent=dict.fromkeys(Channel, True),
        open_p=open_p,
        click_p=click_p,
        conversion_per_click=0.12,
        conversion_per_open=0.0,
        appeal={},
        base_hazard=0.0,
    )


def test_the_oracle_values_a_message_from_the_true_rates() -> None:
    regime = regimes(load_scenario("costly_channel"))[0]
    user = _user(email_open=0.25, email_click=0.10, sms_open=0.30, sms_click=0.095)
    fatigue = Fatigue()
    p_email, _ = conversion_probability(
        user, regime, Channel.EMAIL, "welcome_a", active=True, recent=0, fatigue=fatigue
    )
    p_sms, unsub_sms = conversion_probability(
        user, regime, Channel.SMS, "welcome_a", active=True, recent=0, fatigue=fatigue
    )
    assert p_email == pytest.approx(0.98 * (1 - 0.002) * 0.25 * 0.10 * 0.12)
    assert p_sms > p_email  # SMS converts slightly better...
    assert unsub_sms == pytest.approx(0.98 * 0.02)
    econ = load_scenario("costly_channel").economics

    def value(channel: Channel, objective: Any) -> float:
        return message_value(
            user,
            regime,
            channel,
            "welcome_a",
            active=True,
            recent=0,
            fatigue=fatigue,
            economics=econ,
            objective=objective,
        )

    # ...so the conversions oracle picks it, and the net-value oracle does not.
    assert value(Channel.SMS, "conversions") > value(Channel.EMAIL, "conversions")
    assert value(Channel.SMS, "net_value") < value(Channel.EMAIL, "net_value")


def test_share_of_oracle_is_the_ratio_of_lifts_and_undefined_without_a_ceiling() -> None:
    def lift(x: float) -> Lift:
        return Lift(estimate=x, ci95_low=x - 0.1, ci95_high=x + 0.1, method="katz-log")

    assert share_of_oracle(lift(0.15), lift(0.30)) == pytest.approx(0.5)
    assert share_of_oracle(lift(0.15), lift(0.0)) is None
    assert share_of_oracle(None, lift(0.3)) is None


def test_the_oracle_runs_on_the_adaptive_arms_users_and_reports_its_ceiling() -> None:
    result = simulate(load_scenario("default"), days=10, users=1500, seed=2, oracle=True)
    summary = result.summary()
    arms = summary["arms"]
    assert arms["oracle"]["users"] == arms["adaptive"]["users"]
    assert summary["oracle_baseline"]["users"] == arms["baseline"]["users"]
    assert summary["lift"]["oracle_vs_baseline"] is not None
    assert summary["oracle_objective"] == "conversions"
    # The oracle knows who reads what: it earns more clicks than the baseline's email.
    assert arms["oracle"]["clicks"] > summary["oracle_baseline"]["clicks"]
    oracle = summary["lift"]["oracle_vs_baseline"]["estimate"]
    if oracle > 0:
        assert summary["lift_share_of_oracle"] == pytest.approx(
            summary["lift"]["vs_baseline"]["estimate"] / oracle
        )


def test_the_net_value_oracle_spares_the_costly_channel() -> None:
    scenario = load_scenario("costly_channel")
    by_conversions = simulate(
        scenario, days=7, users=800, seed=1, oracle=True, oracle_objective="conversions"
    ).summary()
    by_value = simulate(
        scenario, days=7, users=800, seed=1, oracle=True, oracle_objective="net_value"
    ).summary()
    sms = [s["arms"]["oracle"]["messages"]["sms"] for s in (by_conversions, by_value)]
    assert sms[0] > 0 and sms[1] < sms[0] / 2
    assert by_value["oracle_objective"] == "net_value"


def test_cli_oracle_prints_the_share(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--users", "400", "--days", "5", "--seed", "2", "--oracle", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert "oracle" in out["arms"] and "lift_share_of_oracle" in out
    assert main(["--users", "300", "--days", "3", "--oracle"]) == 0
    assert "oracle vs baseline" in capsys.readouterr().out


def test_new_scenarios_ship_and_match_their_story() -> None:
    costly = load_scenario("costly_channel")
    email, sms = costly.channels[Channel.EMAIL], costly.channels[Channel.SMS]
    assert sms.cost == pytest.approx(20 * email.cost)
    assert sms.unsubscribe_per_delivery == pytest.approx(10 * email.unsubscribe_per_delivery)
    drift = load_scenario("drift")
    assert len(drift.changes) == 1 and drift.signup_days > drift.changes[0].day
    assert isinstance(drift.economics, Economics)


# --- the context oracle -----------------------------------------------------------------------


def _context_is_everything() -> Scenario:
    """The default world where a user's platform is their segment and users of a segment are
    alike, always active and never tired: nothing hidden beyond the context group."""
    data = _data("default")
    platforms = {"desktop_email": "web", "mobile_first": "ios", "low_intent": "android"}
    data["active_hours"] = {"always": list(range(24))}
    data["fatigue"] = {"window": "P3D", "open_decay": 0.0, "unsubscribe_growth": 0.0}
    for segment in data["segments"]:
        segment["attributes"] = {"platform": {platforms[segment["name"]]: 1.0}}
        segment["active_hours"] = {"always": 1.0}
        segment["concentration"] = 0.0
        for channel in segment["channels"].values():
            channel["never_read"] = 0.0
    data["sequence"]["guardrails"] = {}
    return Scenario.model_validate(data)


def test_where_the_context_is_everything_the_context_oracle_is_the_oracle() -> None:
    result = simulate(
        _context_is_everything(), days=6, users=900, seed=3, oracle=True, context_oracle=True
    ).summary()
    arms = result["arms"]
    assert _figures({"arms": {"o": arms["oracle"]}}) == _figures(
        {"arms": {"o": arms["context_oracle"]}}
    )
    assert result["lift"]["context_oracle_vs_baseline"] == result["lift"]["oracle_vs_baseline"]


def test_the_context_oracle_knows_the_groups_not_the_users() -> None:
    """In the default world users of one platform differ (segments, per-user spread, active
    hours): the context oracle, knowing only the platform groups' means, sends differently
    from the oracle and is reported beside it."""
    summary = simulate(
        load_scenario("default"), days=6, users=1500, seed=2, oracle=True, context_oracle=True
    ).summary()
    arms = summary["arms"]
    assert arms["context_oracle"]["users"] == arms["adaptive"]["users"]
    assert arms["context_oracle"]["messages"] != arms["oracle"]["messages"]
    context = summary["lift"]["context_oracle_vs_baseline"]["estimate"]
    if context > 0:
        assert summary["lift_share_of_context_oracle"] == pytest.approx(
            summary["lift"]["vs_baseline"]["estimate"] / context
        )
    assert main(["--users", "300", "--days", "3", "--context-oracle"]) == 0
