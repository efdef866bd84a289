"""The statistics every study table uses: a mean with the half-width of its 95% Student-t
interval, a paired difference with its verdict, and the correction that makes a table of many
verdicts as trustworthy as one. One copy, read by study/report.py (docs/results_first_study.md),
study/worlds_report.py (docs/results.md), study/measured.py and study/sweep_report.py.

* One comparison: the paired differences (a - b per seed) and their 95% interval; the verdict
  says whether it lies above zero ("higher"), below ("lower") or covers it (`_verdict`).
* A family of comparisons: when a table makes m comparisons at once, some 95% interval will
  exclude zero by chance far more often than 5% of the time (with 10 comparisons of methods
  that do not differ at all, about 40% of the time). So every table's verdicts are corrected
  together: each comparison gets the two-sided p-value of the paired t-test (`paired_p`), Holm's
  step-down method adjusts the p-values of the whole family (`holm`), and a comparison is called
  higher or lower only when its adjusted p-value is under ALPHA (`family_said`). Then the chance
  that any comparison of a family is called higher or lower when none differs is at most ALPHA.
  The interval printed next to the verdict stays the uncorrected one; which comparisons form a
  family is the caller's choice and is stated where the table is written.
* A difference with no data (a NaN) says "no data"; one seed, or differences that are identical
  on every seed (an interval of zero width, for example a run compared with itself), give no
  verdict.

May import: numpy and the standard library only.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 0.05     # the error rate of one comparison, and of one family after Holm's correction

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


def points(values) -> str:
    """'41.2 ± 1.3' over several seeds, '41.2' for one (no interval), '-' for none (NaNs dropped)."""
    vals = [v for v in values if v == v]
    if not vals:
        return "-"
    return _cell(vals) if len(vals) > 1 else f"{100 * vals[0]:.1f}"


def _no_verdict(diffs) -> str | None:
    """Why these paired differences cannot be tested, or None when they can."""
    v = np.asarray(diffs, dtype=float)
    if len(v) == 0 or np.isnan(v).any():
        return "no data"
    if len(v) < 2:
        return "one seed: no verdict"
    if np.ptp(v) <= 1e-12:        # equal up to rounding: 0.7 - 0.6 and (0.1 + 0.2) - 0.2 differ in the last bit
        return "identical on every seed: no verdict"
    return None


def _verdict(diffs) -> str:
    """One comparison on its own (no correction): whether the 95% interval of the paired
    differences lies above zero, below it, or covers it; or why there is no verdict."""
    why = _no_verdict(diffs)
    if why:
        return why
    m, h = mean_ci(diffs)
    if m - h > 0:
        return "higher"
    if m + h < 0:
        return "lower"
    return "no clear difference"


def _said(diffs) -> str:
    """'+1.7 ± 0.2 (higher)': a paired difference in points, with its uncorrected verdict."""
    why = _no_verdict(diffs)
    if why == "no data":
        return "no data"
    m, h = mean_ci(diffs)
    return f"{100 * m:+.1f} ± {100 * h:.1f} ({_verdict(diffs)})"


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with an integer number of degrees of freedom df >= 1.

    Exact finite sums (Abramowitz & Stegun 26.7.3-4): with theta = atan(|t| / sqrt(df)),
    c = cos(theta) and s = sin(theta), P(|T| < |t|) is
        odd df:  (2 / pi) (theta + s (c + 2/3 c^3 + (2 4)/(3 5) c^5 + ... up to c^(df-2)))
        even df: s (1 + 1/2 c^2 + (1 3)/(2 4) c^4 + ... up to c^(df-2)).
    """
    if df < 1 or df != int(df):
        raise ValueError(f"df must be a whole number >= 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:
        total, term = 0.0, c
        for j in range(1, (df - 1) // 2 + 1):     # c, 2/3 c^3, ...: (df - 1) / 2 terms
            total += term
            term *= c * c * (2 * j) / (2 * j + 1)
        inside = (2 / math.pi) * (theta + s * total) if df > 1 else 2 * theta / math.pi
    else:
        total, term = 0.0, 1.0
        for j in range(1, df // 2 + 1):           # 1, 1/2 c^2, ...: df / 2 terms
            total += term
            term *= c * c * (2 * j - 1) / (2 * j)
        inside = s * total
    return min(1.0, max(0.0, 1.0 - inside))


def paired_p(diffs) -> float:
    """Two-sided p-value of the paired t-test that the mean difference is 0 (df = seeds - 1);
    NaN when there is nothing to test (no data, one seed, identical differences)."""
    if _no_verdict(diffs):
        return float("nan")
    v = np.asarray(diffs, dtype=float)
    t = v.mean() / (v.std(ddof=1) / math.sqrt(len(v)))
    return t_two_sided_p(t, len(v) - 1)


def holm(pvalues) -> list[float]:
    """Holm's step-down adjustment of a family's p-values, in the order given.

    Sort the m p-values p_(1) <= ... <= p_(m); the adjusted value of p_(j) is
    max over i <= j of min(1, (m - i + 1) p_(i)). Calling each comparison whose adjusted value
    is under alpha keeps the chance of any false call in the family at most alpha, whatever
    the dependence between the comparisons. NaN p-values (comparisons that could not be
    tested) stay NaN and do not count in m.
    """
    p = [float(x) for x in pvalues]
    order = sorted((i for i, x in enumerate(p) if x == x), key=lambda i: p[i])
    out, running = [float("nan")] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out


def corrected_verdict(diffs, p_holm: float) -> str:
    """The verdict of one comparison of a family: higher / lower when its Holm-adjusted
    p-value is under ALPHA, else no clear difference (or why there is no verdict)."""
    why = _no_verdict(diffs)
    if why:
        return why
    if p_holm < ALPHA:
        return "higher" if float(np.mean(diffs)) > 0 else "lower"
    return "no clear difference"


def holm_p(family: dict) -> dict:
    """key -> the Holm-adjusted p-value of each comparison of one family (key -> paired
    differences); NaN where there is nothing to test."""
    keys = list(family)
    return dict(zip(keys, holm([paired_p(family[k]) for k in keys])))


def family_verdicts(family: dict) -> dict:
    """key -> the corrected verdict alone (higher / lower / no clear difference / why none)."""
    adjusted = holm_p(family)
    return {k: corrected_verdict(d, adjusted[k]) for k, d in family.items()}


def said_corrected(diffs, p_holm: float) -> str:
    """'+0.9 ± 0.9 (Holm p 0.31: no clear difference)': the mean difference in points, the
    half-width of its *uncorrected* 95% interval, the Holm-adjusted p-value and the verdict it
    gives; '-' for no differences at all (nothing to compare), 'no data' for a NaN."""
    if not len(diffs):
        return "-"
    verdict = corrected_verdict(diffs, p_holm)
    if verdict == "no data":
        return verdict
    m, h = mean_ci(diffs)
    return f"{100 * m:+.1f} ± {100 * h:.1f} (" + (f"Holm p {p_holm:.2g}: " if p_holm == p_holm else "") + f"{verdict})"


def family_said(family: dict) -> dict:
    """Every comparison of one family (key -> paired differences) as text (`said_corrected`),
    corrected together."""
    adjusted = holm_p(family)
    return {k: said_corrected(d, adjusted[k]) for k, d in family.items()}


def paired(a: dict, b: dict, field: str = "avg") -> list[float]:
    """a - b per seed, over the seeds both have: a, b map seed -> summary."""
    return [a[k][field] - b[k][field] for k in sorted(a) if k in b]
