"""The statistics every study table uses: a mean with the half-width of its 95% Student-t
interval, and a paired difference with its verdict. One copy, read by study/report.py
(docs/results.md) and study/sweep_report.py (`sweep-report`).

May import: numpy and the standard library only.
"""

from __future__ import annotations

import math

import numpy as np

# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (no scipy needed)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t confidence interval (0 for one value)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), 0.0
    t = _T975[len(v) - 2] if len(v) - 1 <= len(_T975) else 1.96
    return float(v.mean()), float(t * v.std(ddof=1) / math.sqrt(len(v)))


def _cell(values, scale: float = 100.0) -> str:
    """'41.2 ± 1.3': mean ± half-width, in points (x100)."""
    m, h = mean_ci(values)
    return f"{scale * m:.1f} ± {scale * h:.1f}"


def _verdict(diffs) -> str:
    """Whether the 95% interval of paired differences lies above zero, below it, or covers it;
    one difference has no interval, so no verdict."""
    if len(diffs) < 2:
        return "one seed: no verdict"
    m, h = mean_ci(diffs)
    if m - h > 0:
        return "higher"
    if m + h < 0:
        return "lower"
    return "no clear difference"


def _said(diffs) -> str:
    """'+1.7 ± 0.2 (higher)': a paired difference in points, with its verdict."""
    m, h = mean_ci(diffs)
    return f"{100 * m:+.1f} ± {100 * h:.1f} ({_verdict(diffs)})"


def paired(a: dict, b: dict, field: str = "avg") -> list[float]:
    """a - b per seed, over the seeds both have: a, b map seed -> summary."""
    return [a[k][field] - b[k][field] for k in sorted(a) if k in b]
