"""The whole program against the workspace's global control group: conversion rate and
revenue per user of the treated users (every enrolled user outside the control, whatever
their per-sequence arm) and of the control, and what the program added, with 95% CIs.

    incremental conversions = (p_t - p_c) * n_t
    incremental revenue     = (m_t - m_c) * n_t

where `p` is the share of a group's users who converted and `m` its revenue per user. The
interval of `p_t - p_c` is Newcombe's hybrid score interval (method 10: each rate's Wilson
interval, `lift.wilson_interval`, combined), well behaved at 0 and 1; the interval of
`m_t - m_c` is the normal (Welch) interval from each group's per-user revenue variance. Both
are scaled by `n_t`. With fewer than `MIN_GROUP_USERS` users in either group no comparison is
made and `status` says why (no fake numbers).

Pure: the overview route calls it on per-group sums ClickHouse computed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sme.core.lift import Z95, wilson_interval

MIN_GROUP_USERS = 30
"""Below this many users in either group the normal approximations are not trusted."""
RATE_METHOD = "newcombe-wilson"
REVENUE_METHOD = "welch-normal"


@dataclass(frozen=True, slots=True)
class GroupTotals:
    """One group's enrolled users, how many converted, and the sum and sum of squares of
    their per-user revenue."""

    users: int
    converted: int
    revenue: float
    revenue_sq: float

    def summary(self) -> dict[str, Any]:
        rate = self.converted / self.users if self.users else None
        ci = wilson_interval(self.converted, self.users)
        return {
            "users": self.users,
            "converted": self.converted,
            "conversion_rate": rate,
            "conversion_rate_ci95": list(ci) if ci else None,
            "revenue": self.revenue,
            "revenue_per_user": self.revenue / self.users if self.users else None,
        }


def _rate_difference_ci(treated: GroupTotals, control: GroupTotals) -> tuple[float, float]:
    """Newcombe's hybrid score interval of `p_t - p_c`."""
    p_t, p_c = treated.converted / treated.users, control.converted / control.users
    low_t, high_t = wilson_interval(treated.converted, treated.users) or (p_t, p_t)
    low_c, high_c = wilson_interval(control.converted, control.users) or (p_c, p_c)
    diff = p_t - p_c
    low = diff - math.sqrt((p_t - low_t) ** 2 + (high_c - p_c) ** 2)
    high = diff + math.sqrt((high_t - p_t) ** 2 + (p_c - low_c) ** 2)
    return low, high


def _mean_and_variance(group: GroupTotals) -> tuple[float, float]:
    """Mean revenue per user and its sample variance (0 for a single user)."""
    n = group.users
    mean = group.revenue / n
    variance = (group.revenue_sq - n * mean * mean) / (n - 1) if n > 1 else 0.0
    return mean, max(variance, 0.0)


def _interval(estimate: float, low: float, high: float, method: str) -> dict[str, Any]:
    return {"estimate": estimate, "ci95_low": low, "ci95_high": high, "method": method}


def program_lift(
    treated: GroupTotals, control: GroupTotals, pct: float, min_users: int = MIN_GROUP_USERS
) -> dict[str, Any]:
    """The program's comparison; `status` is `off` (no control configured and none measured),
    `too_small` (a group under `min_users`) or `ok` (with incremental figures)."""
    out: dict[str, Any] = {
        "pct": pct,
        "min_group_users": min_users,
        "treated": treated.summary(),
        "control": control.summary(),
        "incremental_conversions": None,
        "incremental_revenue": None,
    }
    if pct <= 0 and control.users == 0:
        return {**out, "status": "off"}
    if treated.users < min_users or control.users < min_users:
        return {**out, "status": "too_small"}
    n_t = treated.users
    diff = treated.converted / n_t - control.converted / control.users
    low, high = _rate_difference_ci(treated, control)
    mean_t, var_t = _mean_and_variance(treated)
    mean_c, var_c = _mean_and_variance(control)
    gap = mean_t - mean_c
    half = Z95 * math.sqrt(var_t / n_t + var_c / control.users)
    return {
        **out,
        "status": "ok",
        "incremental_conversions": _interval(diff * n_t, low * n_t, high * n_t, RATE_METHOD),
        "incremental_revenue": _interval(
            gap * n_t, (gap - half) * n_t, (gap + half) * n_t, REVENUE_METHOD
        ),
    }
