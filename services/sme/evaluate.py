"""`sme evaluate`: the core's variant choice replayed on a real logged bandit dataset.

The Open Bandit Dataset sample (ZOZOTOWN, uniformly random item recommendation: 10,000
impressions, 80 items, clicks as reward) ships inside the `obp` package on PyPI. Its
dependencies do not install beside ours, so the sample is read straight from the wheel
(`pip download obp --no-deps -d DIR`, then `--data DIR/obp-*.whl`) or from an extracted CSV.

Estimator: the replay method (Li et al., WSDM 2011) on a bootstrap stream of the log. A logged
impression (x, a, r) is drawn uniformly with replacement; the policy chooses for x; the
impression counts, and the policy learns r, only if it chose a. Draws are repeated until
`steps` impressions counted; the estimate is their mean reward. Because the policy's choice
depends on x only through its context group g, a counted impression is drawn exactly as by
that rejection loop, but faster: g with probability n_g / n, the policy's choice a for g,
accepted with probability n_{g,a} / max_b n_{g,b}, then a logged impression of (g, a).

Baselines, as replay expectations on the same log: uniform random (the mean click rate) and
the best fixed item (the best in-sample click rate: a hindsight ceiling). The figure that
matters is the share of the uniform -> best-fixed gap the policy captures, per seed.

Wiring into the `sme` command: `add_parser(subparsers)` adds the subcommand, `run(args)`
executes it and returns the exit code (as `sme.simulator.cli`)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import zipfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sme.contracts.commands import Arm
from sme.contracts.sequences import Adaptive
from sme.core.policy import choose_variant
from sme.core.stats import context_group, deltas
from sme.core.user_state import Profile

WHEEL_MEMBER = "obp/dataset/obd/random/all/all.csv"
CONFIG, STEP, CHANNEL = "obd", "recommend", "in_app"
DEFAULT_CONTEXT = ("user_feature_0",)
DESCRIPTION = (
    "Replay the core's variant choice on the Open Bandit Dataset sample (from the obp wheel: "
    "pip download obp --no-deps -d DIR) with the replay estimator, against uniform random and "
    "the best fixed item; report the share of the uniform -> best-fixed gap captured per seed."
)


@dataclass(frozen=True, slots=True)
class Impression:
    item: str
    click: int
    context: dict[str, str]


@dataclass(frozen=True, slots=True)
class LoggedData:
    impressions: tuple[Impression, ...]
    items: tuple[str, ...]


class EvaluateError(Exception):
    """The dataset cannot be read."""


def load_obd(path: Path) -> LoggedData:
    """The logged impressions of the random-policy sample, from the wheel or a CSV."""
    try:
        if path.suffix in {".whl", ".zip"}:
            with zipfile.ZipFile(path) as wheel:
                text = wheel.read(WHEEL_MEMBER).decode()
        else:
            text = path.read_text()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise EvaluateError(f"cannot read {path}: {exc}") from exc
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "item_id" not in rows[0] or "click" not in rows[0]:
        raise EvaluateError(f"{path}: not an Open Bandit Dataset log (item_id, click)")
    impressions = tuple(
        Impression(
            row["item_id"],
            int(row["click"]),
            {k: v for k, v in row.items() if k.startswith("user_feature_")},
        )
        for row in rows
    )
    items = tuple(sorted({i.item for i in impressions}, key=int))
    return LoggedData(impressions, items)


def baselines(data: LoggedData) -> tuple[float, float, str]:
    """(uniform, best fixed, best item): replay expectations on the log."""
    shown: dict[str, int] = defaultdict(int)
    clicks: dict[str, int] = defaultdict(int)
    for imp in data.impressions:
        shown[imp.item] += 1
        clicks[imp.item] += imp.click
    uniform = sum(clicks.values()) / len(data.impressions)
    best = max(data.items, key=lambda a: (clicks[a] / shown[a], -int(a)))
    return uniform, clicks[best] / shown[best], best


Policy = Callable[[str, dict[str, tuple[float, float]], random.Random], str]


def core_policy(adaptive: Adaptive, items: Sequence[str]) -> Policy:
    """The core's variant choice (the adaptive arm) for one context group."""

    def choose(group: str, stats: dict[str, tuple[float, float]], rng: random.Random) -> str:
        return choose_variant(items, Arm.ADAPTIVE, adaptive, stats, CONFIG, STEP, group, rng).value

    return choose


def replay(
    data: LoggedData,
    policy: Policy,
    context: Sequence[str],
    steps: int,
    rng: random.Random,
) -> float:
    """The replay estimate of the policy's mean reward over `steps` counted impressions."""
    by_cell: dict[tuple[str, str], list[int]] = defaultdict(list)
    group_of: list[str] = []
    for imp in data.impressions:
        profile = Profile(attributes=dict(imp.context))
        group = context_group(profile, list(context))
        group_of.append(group)
        by_cell[(group, imp.item)].append(imp.click)
    groups = sorted(set(group_of))
    widest = {g: max(len(by_cell[(g, a)]) for a in data.items) for g in groups}
    stats: dict[str, tuple[float, float]] = {}
    total = 0
    for _ in range(steps):
        while True:
            group = group_of[rng.randrange(len(group_of))]
            item = policy(group, stats, rng)
            cell = by_cell.get((group, item))
            if cell and rng.random() * widest[group] < len(cell):
                break
        click = cell[rng.randrange(len(cell))]
        total += click
        for delta in deltas(CONFIG, STEP, CHANNEL, item, group, 1, click):
            trials, successes = stats.get(delta.key, (0.0, 0.0))
            stats[delta.key] = (trials + delta.trials, successes + delta.successes)
    return total / steps


def evaluate(
    data: LoggedData, seeds: Sequence[int], steps: int, context: Sequence[str]
) -> dict[str, object]:
    """Per seed: the core's policy with context groups, the core's policy pooled, and a plain
    pooled Beta(1, 1)-Bernoulli Thompson sampler without a floor (the reference: the core with
    pooling fixed and no context); each with its share of the gap."""
    uniform, best, best_item = baselines(data)
    gap = best - uniform
    policies = {
        "sme": (Adaptive(), tuple(context)),
        "sme_pooled": (Adaptive(), ()),
        "thompson_reference": (
            Adaptive(exploration="none", pooling="fixed", user_affinity_weight=0),
            (),
        ),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in policies}
    for seed in seeds:
        for name, (adaptive, attrs) in policies.items():
            rng = random.Random(seed)  # noqa: S311 - a reproducible replay, not a secret
            reward = replay(data, core_policy(adaptive, data.items), attrs, steps, rng)
            share = (reward - uniform) / gap if gap > 0 else 0.0
            results[name].append({"seed": seed, "reward": reward, "gap_share": share})
    return {
        "dataset": "open-bandit-dataset random/all (obp sample)",
        "impressions": len(data.impressions),
        "items": len(data.items),
        "steps": steps,
        "context": list(context),
        "estimator": "replay (Li et al. 2011) on a bootstrap stream",
        "uniform": uniform,
        "best_fixed": best,
        "best_fixed_item": best_item,
        "policies": {
            name: {
                "per_seed": rows,
                "mean_gap_share": sum(r["gap_share"] for r in rows) / len(rows),
                "min_gap_share": min(r["gap_share"] for r in rows),
            }
            for name, rows in results.items()
        },
    }


def format_text(result: dict[str, object]) -> str:
    lines = [
        f"{result['dataset']}: {result['impressions']} impressions, {result['items']} items, "
        f"{result['steps']} replayed steps per seed, context {result['context'] or 'none'}",
        f"uniform random {result['uniform']:.5f}   best fixed item "
        f"{result['best_fixed_item']} {result['best_fixed']:.5f}",
    ]
    policies = result["policies"]
    if not isinstance(policies, dict):
        raise TypeError("result['policies'] must be a dict")
    for name, summary in policies.items():
        per_seed = "  ".join(
            f"s{r['seed']}: {r['reward']:.5f} ({r['gap_share']:.0%})" for r in summary["per_seed"]
        )
        lines.append(
            f"{name:<20} gap share mean {summary['mean_gap_share']:.1%} "
            f"min {summary['min_gap_share']:.1%}   {per_seed}"
        )
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="PATH",
        help="the obp wheel (pip download obp --no-deps -d DIR) or the extracted all.csv",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default 5)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="counted impressions per seed (default: as many as the log has)",
    )
    parser.add_argument(
        "--context",
        nargs="*",
        default=list(DEFAULT_CONTEXT),
        metavar="FEATURE",
        help="user features used as context attributes (default: user_feature_0)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the `evaluate` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "evaluate", help="replay the policy on a real logged dataset", description=DESCRIPTION
    )
    return configure(parser)


def run(args: argparse.Namespace) -> int:
    """Execute `sme evaluate`; 0, or 2 for an unreadable dataset or bad arguments."""
    if args.seeds < 1 or (args.steps is not None and args.steps < 1) or len(args.context) > 3:
        print(
            "sme evaluate: --seeds and --steps must be >= 1, at most 3 --context", file=sys.stderr
        )
        return 2
    try:
        data = load_obd(args.data)
    except EvaluateError as exc:
        print(f"sme evaluate: {exc}", file=sys.stderr)
        return 2
    steps = args.steps or len(data.impressions)
    result = evaluate(data, range(1, args.seeds + 1), steps, args.context)
    print(json.dumps(result, sort_keys=True) if args.json else format_text(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = configure(argparse.ArgumentParser(prog="sme evaluate", description=DESCRIPTION))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
