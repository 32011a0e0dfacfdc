"""Independent implementations that tests compare the code with (never the code itself)."""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def katz_lift(conv_a: int, n_a: int, conv_b: int, n_b: int) -> tuple[float, float, float]:
    """(estimate, ci95_low, ci95_high) of the lift `p_a / p_b - 1`: the Katz log 95% interval
    of the risk ratio, with 0.5 added to every cell of the 2x2 table when an arm has no
    conversions (Haldane-Anscombe)."""
    pad = 0.5 if conv_a == 0 or conv_b == 0 else 0.0
    x_a, x_b = conv_a + pad, conv_b + pad
    m_a, m_b = n_a + 2 * pad, n_b + 2 * pad
    rr = (x_a / m_a) / (x_b / m_b)
    half = Z95 * math.sqrt(1 / x_a - 1 / m_a + 1 / x_b - 1 / m_b)
    return rr - 1, rr * math.exp(-half) - 1, rr * math.exp(half) - 1
