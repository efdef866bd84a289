"""study/stats.py: the paired t-test's p-value, Holm's correction, and the verdicts a family of
comparisons gets; then the claim the report makes of them (docs/results.md): when no method
differs, a family calls any comparison "higher" at most at the stated rate (ALPHA), where
uncorrected intervals would call one far more often."""

import math

import numpy as np
import pytest

from sgopd_lite.study import worlds_report as W
from sgopd_lite.study.stats import (ALPHA, _T975, _said, _verdict, family_said, family_verdicts, holm, paired_p,
                                    t_two_sided_p)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8, 13, 30])
def test_the_t_tables_quantile_has_a_two_sided_p_of_five_percent(df):
    assert t_two_sided_p(_T975[df - 1], df) == pytest.approx(0.05, abs=2e-4)
    assert t_two_sided_p(0.0, df) == 1.0
    assert t_two_sided_p(-3.0, df) == t_two_sided_p(3.0, df)


def test_t_p_values_match_closed_forms():
    # df = 1 is the Cauchy distribution, df = 2 has P(|T| > t) = 1 - t / sqrt(2 + t^2)
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5)
    assert t_two_sided_p(2.0, 2) == pytest.approx(1 - 2 / math.sqrt(6))
    # a large-df t tends to the normal: P(|Z| > 1.96) = 0.05
    assert t_two_sided_p(1.96, 2000) == pytest.approx(0.05, abs=1e-3)


def test_holm_adjusts_step_down_and_leaves_untested_comparisons_out():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): x4, x3, x2, x1, each at least the one before
    assert holm([0.01, 0.04, 0.03, float("nan"), 0.005]) == pytest.approx([0.03, 0.06, 0.06, float("nan"), 0.02],
                                                                         nan_ok=True)
    assert holm([0.5, 0.9]) == [1.0, 1.0]                    # capped at 1
    assert holm([]) == []


def test_a_difference_without_data_or_without_spread_gets_no_verdict():
    nan = float("nan")
    assert _verdict([nan, 0.1]) == "no data" and _said([nan, nan]) == "no data"
    # identical differences: an interval of zero width, which would have read "higher"
    assert _verdict([0.02, 0.02, 0.02]) == "identical on every seed: no verdict"
    assert _said([0.0, 0.0]) == "+0.0 ± 0.0 (identical on every seed: no verdict)"
    rounded = [0.7 - 0.6, (0.1 + 0.2) - 0.2, 0.42 - 0.32]                           # 0.1, up to the last bit
    assert len(set(rounded)) > 1 and _verdict(rounded) == "identical on every seed: no verdict"
    assert math.isnan(paired_p([0.02, 0.02])) and math.isnan(paired_p([0.3]))
    said = family_said({"a": [0.02, 0.02], "b": [nan, 0.1], "c": []})
    assert said == {"a": "+2.0 ± 0.0 (identical on every seed: no verdict)", "b": "no data", "c": "-"}


def test_a_family_is_corrected_together():
    # each of these alone has p about 0.03 (uncorrected: higher); five of them together do not survive
    d = [0.010, 0.030, 0.015, 0.025, 0.005]
    assert _verdict(d) == "higher" and paired_p(d) < ALPHA
    assert family_verdicts({k: d for k in range(5)}) == {k: "no clear difference" for k in range(5)}
    # a strong effect survives its family, and the text shows the uncorrected interval beside it
    strong = [0.10, 0.11, 0.12, 0.10, 0.11]
    said = family_said({"strong": strong, **{k: d for k in range(4)}})["strong"]
    assert said.startswith("+10.8 ± 1.0 (Holm p ") and said.endswith(": higher)")


# --------------------------------------------------------------------------------------------
# Pure noise through the report's own families
# --------------------------------------------------------------------------------------------

def _noise_study(rng, seeds=5, grpo_shift=0.0) -> dict:
    """The worlds study with every method drawn from one distribution: a per-seed effect every
    method shares (same prompts, same start) plus independent noise per run; GRPO moved by
    `grpo_shift`."""
    main = W.Runs("worlds_main")
    for w in W.WORLDS:
        shared = rng.normal(0.3, 0.02, seeds)
        for k in W.METHODS:
            shift = grpo_shift if k == "grpo" else 0.0
            main.cells[(w, k)] = {s: {"avg": shared[s] + shift + rng.normal(0, 0.01)} for s in range(seeds)}
    return {"worlds_main": main, "a2c_confirm": W.Runs("a2c_confirm")}


def test_with_pure_noise_a_family_calls_higher_at_most_at_the_stated_rate():
    rng = np.random.default_rng(2024)
    draws, family_higher, headline, uncorrected = 1500, 0, 0, 0
    for _ in range(draws):
        st = _noise_study(rng)
        said = W.world_said(st["worlds_main"], "a2c")                      # one family of the tables
        family_higher += any(text.endswith(": higher)") for text in said.values())
        # the headline's family, where GRPO is far behind, so a gate "wins" as soon as it is called higher than OPD
        headline += bool(W.gate_wins(_noise_study(rng, grpo_shift=-0.2)))
        m = st["worlds_main"]
        uncorrected += any(_verdict(W.diff(m.seeds("a2c", k), m.seeds("a2c", "opd"))) == "higher"
                           for k in W.METHODS if k != "opd")
    # the stated rate, with room for the sampling error of 1500 draws (sd of a 5% rate: 0.6%)
    assert family_higher / draws <= ALPHA + 0.015, family_higher / draws
    assert headline / draws <= ALPHA + 0.015, headline / draws
    # what the correction guards against: uncorrected intervals call some method higher far more often
    assert uncorrected / draws > 2 * ALPHA, uncorrected / draws
