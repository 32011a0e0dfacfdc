"""Relative lift of one conversion rate over another, with a 95% confidence interval.

The lift of arm A over arm B is `p_a / p_b - 1`, where `p = conversions / users`. Its interval
is the Katz log interval for a ratio of two independent binomial proportions (the delta
method applied to the log risk ratio):

    log RR = log(p_a / p_b)
    SE(log RR) = sqrt(1/x_a - 1/n_a + 1/x_b - 1/n_b)
    95% CI of RR = exp(log RR -/+ z * SE),   z = 1.959964 (the 97.5% normal quantile)

and the lift interval is the RR interval minus one. The interval is asymmetric around the
estimate, as a ratio's should be, and always contains it.

Zero counts: with no conversions in one arm the log ratio is undefined, so when either arm has
zero conversions 0.5 is added to every cell of the 2x2 table (conversions and
non-conversions of both arms; the Haldane-Anscombe correction), i.e. `x -> x + 0.5` and
`n -> n + 1`, and the corrected counts give both the estimate and the interval. An arm with no
users has no rate: `relative_lift` raises `ValueError`, and `lift_report` reports `None` for
that comparison.

Pure: no I/O, no randomness; the simulator and the reporting API call the same functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

Z95 = NormalDist().inv_cdf(0.975)
METHOD = "katz-log"
METHOD_CORRECTED = "katz-log+haldane-0.5"


@dataclass(frozen=True, slots=True)
class Lift:
    """Relative lift `rate_a / rate_b - 1` as a fraction (0.2 is +20%) and its 95% CI."""

    estimate: float
    ci95_low: float
    ci95_high: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def relative_lift(conv_a: int, n_a: int, conv_b: int, n_b: int) -> Lift:
    """Relative lift of the conversion rate of A (`conv_a / n_a`) over B's, Katz log 95% CI.

    Raises ValueError if an arm has no users or counts are inconsistent (negative, or more
    conversions than users)."""
    for conv, n, arm in ((conv_a, n_a, "a"), (conv_b, n_b, "b")):
        if n <= 0:
            raise ValueError(f"arm {arm} has no users: a rate needs n > 0")
        if conv < 0 or conv > n:
            raise ValueError(f"arm {arm}: conversions must be between 0 and n ({conv} of {n})")
    x_a, m_a, x_b, m_b = float(conv_a), float(n_a), float(conv_b), float(n_b)
    method = METHOD
    if conv_a == 0 or conv_b == 0:
        x_a, m_a, x_b, m_b = x_a + 0.5, m_a + 1.0, x_b + 0.5, m_b + 1.0
        method = METHOD_CORRECTED
    log_rr = math.log(x_a / m_a) - math.log(x_b / m_b)
    variance = max(1.0 / x_a - 1.0 / m_a + 1.0 / x_b - 1.0 / m_b, 0.0)
    half_width = Z95 * math.sqrt(variance)
    return Lift(
        estimate=math.exp(log_rr) - 1.0,
        ci95_low=math.exp(log_rr - half_width) - 1.0,
        ci95_high=math.exp(log_rr + half_width) - 1.0,
        method=method,
    )


def lift_report(
    counts: Mapping[str, tuple[int, int]], treatment: str = "adaptive"
) -> dict[str, Lift | None]:
    """The `lift` object of a report: the treatment arm against `baseline` and `holdout`.

    `counts` maps an arm name to `(conversions, users)`. A comparison whose arms are missing
    or empty is `None`."""
    out: dict[str, Lift | None] = {}
    treated = counts.get(treatment, (0, 0))
    for control in ("baseline", "holdout"):
        other = counts.get(control, (0, 0))
        if treated[1] <= 0 or other[1] <= 0:
            out[f"vs_{control}"] = None
        else:
            out[f"vs_{control}"] = relative_lift(treated[0], treated[1], other[0], other[1])
    return out


def wilson_interval(conversions: int, users: int) -> tuple[float, float] | None:
    """95% Wilson score interval of one arm's conversion rate (what the dashboard draws as
    the arm's error bar); None without users. Well behaved at 0 and at `users`."""
    if users <= 0:
        return None
    if not 0 <= conversions <= users:
        raise ValueError(f"conversions must be between 0 and users ({conversions} of {users})")
    p = conversions / users
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * users)) / (1 + z2 / users)
    half = Z95 * math.sqrt(p * (1 - p) / users + z2 / (4 * users * users)) / (1 + z2 / users)
    low = 0.0 if conversions == 0 else max(0.0, centre - half)
    high = 1.0 if conversions == users else min(1.0, centre + half)
    return min(low, p), max(high, p)  # rounding never puts the rate outside
