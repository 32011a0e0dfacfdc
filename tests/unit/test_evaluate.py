"""`sme evaluate`: the logged sample is read from the obp wheel or a CSV, the baselines are the
replay expectations, and the core's policy, replayed on a log where one item is clearly best,
captures most of the uniform -> best-fixed gap."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest

from sme.contracts.sequences import Adaptive
from sme.evaluate import (
    WHEEL_MEMBER,
    EvaluateError,
    baselines,
    core_policy,
    evaluate,
    load_obd,
    main,
    replay,
)

HEADER = ",timestamp,item_id,position,click,propensity_score,user_feature_0\n"


def synthetic_log(rows: int = 4000, seed: int = 0) -> str:
    """A uniformly random log over 8 items: item 3 clicks 20%, the others 2%."""
    rng = random.Random(seed)
    lines = [HEADER]
    for i in range(rows):
        item = rng.randrange(8)
        click = int(rng.random() < (0.2 if item == 3 else 0.02))
        lines.append(f"{i},t,{item},1,{click},0.125,{'ab'[rng.randrange(2)]}\n")
    return "".join(lines)


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    path = tmp_path / "all.csv"
    path.write_text(synthetic_log())
    return path


def test_the_sample_is_read_from_inside_the_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "obp-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(WHEEL_MEMBER, synthetic_log(100))

    data = load_obd(wheel)

    assert len(data.impressions) == 100
    assert data.items == tuple(str(i) for i in range(8))


def test_an_unreadable_dataset_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")

    with pytest.raises(EvaluateError):
        load_obd(bad)
    with pytest.raises(EvaluateError):
        load_obd(tmp_path / "missing.whl")


def test_the_baselines_are_the_mean_and_the_best_in_sample_click_rates(csv_path: Path) -> None:
    uniform, best, item = baselines(load_obd(csv_path))

    assert item == "3"
    assert best == pytest.approx(0.2, abs=0.05)
    assert uniform == pytest.approx((0.2 + 7 * 0.02) / 8, abs=0.01)


def test_the_core_policy_captures_most_of_the_gap_on_a_clear_log(csv_path: Path) -> None:
    data = load_obd(csv_path)
    uniform, best, _ = baselines(data)

    reward = replay(
        data, core_policy(Adaptive(), data.items), ["user_feature_0"], 3000, random.Random(1)
    )

    assert (reward - uniform) / (best - uniform) > 0.8


def test_the_report_covers_every_policy_and_seed(csv_path: Path) -> None:
    result = evaluate(load_obd(csv_path), [1, 2], 300, [])

    policies = result["policies"]
    assert isinstance(policies, dict)
    assert set(policies) == {"sme", "sme_pooled", "thompson_reference"}
    assert [r["seed"] for r in policies["sme"]["per_seed"]] == [1, 2]


def test_the_command_exits_2_on_a_bad_dataset(tmp_path: Path) -> None:
    assert main(["--data", str(tmp_path / "none.csv")]) == 2
    assert main(["--data", str(tmp_path / "none.csv"), "--seeds", "0"]) == 2
