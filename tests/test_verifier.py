"""Unit tests for sgopd_lite.verifier: literal strings in, verdicts out.

Tables first (extraction, normalisation, grading), then the hard promise: every call returns
a bool, never raises and never hangs, on hostile strings, from threads, under fuzzing, and when
the worker process freezes or dies. One short-timeout Verifier is shared by the module so the
worker starts once.
"""

import concurrent.futures as cf
import os
import signal
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgopd_lite import verifier as V
from sgopd_lite.verifier import Verifier, extract_answer, normalize_answer

TIMEOUT = 1.0  # seconds per answer in these tests
BOUND = TIMEOUT + 5.0  # what any single call may take here: the budget plus a generous margin


@pytest.fixture(scope="module")
def ver():
    v = Verifier(timeout=TIMEOUT)
    assert v.grade(r"\boxed{0.5}", r"\frac{1}{2}")  # warm-up: worker started, sympy loaded
    yield v
    v.close()


# ----------------------------------------------------------------------------------------
# extract_answer
# ----------------------------------------------------------------------------------------

EXTRACT_CASES = [
    # (id, text, fallback_last_number, expected)
    ("nested_frac", r"so $x = \boxed{\frac{1}{2}}$.", False, r"\frac{1}{2}"),
    ("sqrt", r"\boxed{\sqrt{2}}", False, r"\sqrt{2}"),
    ("fbox", r"answer: \fbox{3}", False, "3"),
    ("last_boxed_wins", r"first \boxed{1}, then \boxed{2}", False, "2"),
    ("boxed_in_boxed", r"\boxed{\boxed{7}}", False, "7"),
    ("boxed_space_token", r"The answer is \boxed 5", False, "5"),
    ("boxed_space_token_period", r"so \boxed 42.", False, "42"),
    ("boxed_space_before_brace", r"\boxed {12}", False, "12"),
    ("boxed_escaped_braces", r"\boxed{\{1,2\}}", False, r"\{1,2\}"),
    ("boxed_left_brace_piecewise", r"\boxed{\left\{x\right.}", False, r"\left\{x\right."),
    ("boxed_empty", r"\boxed{}", False, ""),
    ("not_a_box_command", r"\boxedx{3}", False, None),
    ("hash_gsm8k", "She pays 2*617 = 1234.\n#### 1,234", False, "1234"),
    ("hash_last_wins", "#### 5\nwait, no\n#### 6", False, "6"),
    ("hash_negative_decimal", "#### -2.5", False, "-2.5"),
    ("boxed_beats_hash", "#### 5\n" + r"\boxed{6}", False, "6"),
    ("nothing", "I do not know.", False, None),
    ("number_no_fallback", "so it is 17 apples", False, None),
    ("number_fallback", "so it is 17 apples", True, "17"),
    ("fallback_last_of_several", "3 then 4 then 1,500 done", True, "1500"),
    ("fallback_negative", "x = -8", True, "-8"),
    ("fallback_no_number", "no digits here", True, None),
    ("unbalanced_boxed", r"\boxed{\frac{1}{2}", False, None),
    ("unbalanced_last_box_hides_earlier", r"\boxed{1} and \boxed{2", False, None),
    ("unbalanced_then_hash", "\\boxed{3\n#### 4", False, "4"),
    ("unbalanced_then_fallback", r"\boxed{3", True, "3"),
    ("not_a_string", None, True, None),
]


@pytest.mark.parametrize("text,fallback,expected", [c[1:] for c in EXTRACT_CASES],
                         ids=[c[0] for c in EXTRACT_CASES])
def test_extract_answer(text, fallback, expected):
    assert extract_answer(text, fallback_last_number=fallback) == expected


def test_extract_is_linear_on_huge_inputs():
    deep = r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}"
    mb_text = "lorem ipsum 12 " * 70_000 + r"\boxed{42}"  # ~1 MB before the answer
    mb_boxed = r"\boxed{" + "x+" * 500_000 + "1}"
    many_boxes = r"\boxed{" * 100_000  # 700 kB of opening boxes, none closed
    t = time.perf_counter()
    assert extract_answer(deep) == "{" * 10_000 + "1" + "}" * 10_000
    assert extract_answer(mb_text) == "42"
    assert len(extract_answer(mb_boxed)) == 1_000_001
    assert extract_answer(many_boxes) is None
    assert extract_answer("1" * 1_000_000, fallback_last_number=True) == "1" * 1_000_000
    assert time.perf_counter() - t < 3.0  # a quadratic scan would take minutes


# ----------------------------------------------------------------------------------------
# normalize_answer
# ----------------------------------------------------------------------------------------

NORMALIZE_CASES = [
    ("  7 ", "7"),
    ("$7$", "7"),
    ("$$ 7 $$", "7"),
    (r"\(7\)", "7"),
    ("7.", "7"),
    ("$7$.", "7"),
    ("0.5", "0.5"),
    ("1,234,567", "1234567"),
    ("-1,234.5", "-1234.5"),
    ("1{,}000", "1000"),
    (r"1\,000", "1000"),
    ("1,2", "1,2"),  # a set or interval, not a thousands separator
    ("1,23", "1,23"),
    ("(1,234)", "(1,234)"),  # only a bare number loses its commas
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"\tfrac12", r"\frac12"),
    (r"x\!=\!3", "x=3"),
    (r"a\\,b", r"a\\,b"),  # `\\` is a line break, not the start of `\,`
    ("1, 2, ...", "1, 2, ..."),
    ("", ""),
    (None, ""),
]


@pytest.mark.parametrize("raw,expected", NORMALIZE_CASES)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_is_linear_on_dollar_walls():
    t = time.perf_counter()
    out = normalize_answer("$" * 1_000_000)
    assert isinstance(out, str) and len(out) < 1_000_000
    assert time.perf_counter() - t < 2.0


# ----------------------------------------------------------------------------------------
# grading (through the worker)
# ----------------------------------------------------------------------------------------

GRADE_CASES = [
    # (id, completion, gold, expected)
    ("half_decimal_vs_frac", r"\boxed{0.5}", r"\frac{1}{2}", True),
    ("frac_vs_decimal", r"\boxed{\frac{1}{2}}", "0.5", True),
    ("dfrac", r"\boxed{\dfrac{3}{4}}", r"\frac34", True),
    ("wrong_number", r"\boxed{2}", "3", False),
    ("thousands_commas", r"\boxed{1,000}", "1000", True),
    ("gsm8k_hash", "so 3 + 4 = 7\n#### 7", "7", True),
    ("gsm8k_hash_wrong", "#### 8", "7", False),
    ("float_vs_int", r"\boxed{18.00}", "18", True),
    ("dollar_sign", r"\boxed{\$18}", "18", True),
    ("sqrt_equal", r"\boxed{\sqrt{8}}", r"2\sqrt{2}", True),
    ("pi_frac", r"\boxed{\frac{\pi}{2}}", r"\frac{\pi}{2}", True),
    ("tuple_spacing", r"\boxed{(3,\frac{\pi}{2})}", r"\left( 3, \frac{\pi}{2} \right)", True),
    ("interval_same", r"\boxed{[1,2)}", "[1, 2)", True),
    ("interval_open_vs_closed", r"\boxed{[1,2)}", "[1,2]", False),
    ("interval_union", r"\boxed{(-\infty,0)\cup(1,\infty)}", r"(-\infty, 0) \cup (1, \infty)",
     True),
    ("set_order", r"\boxed{\{2,1\}}", r"\{1,2\}", True),
    ("one_comma_two_is_not_12", r"\boxed{1,2}", "12", False),
    # math-verify treats `x = 3` as the value 3, in both directions (decided by math-verify,
    # recorded here on purpose: a student answering "x = 3" for "3" gets the reward).
    ("equation_vs_value", r"\boxed{x=3}", "3", True),
    ("value_vs_equation", r"\boxed{3}", "x=3", True),
    ("equation_wrong_value", r"\boxed{x=4}", "3", False),
    ("text_same", r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", True),
    ("text_vs_bare", r"\boxed{\text{Monday}}", "Monday", True),
    ("text_different", r"\boxed{\text{Tuesday}}", r"\text{Monday}", False),
    ("mc_letter", r"\boxed{\text{(C)}}", r"\text{(C)}", True),
    ("expression", r"\boxed{p-q}", "p - q", True),
    ("expression_wrong", r"\boxed{p+q}", "p - q", False),
    ("degrees", r"\boxed{30^\circ}", "30", True),
    # Floats are compared after rounding to 6 decimals (math-verify's float_rounding=6).
    ("pi_to_7_digits", r"\boxed{3.1415926}", r"\pi", True),
    ("third_to_6_digits", r"\boxed{0.333333}", r"\frac13", True),
    ("third_to_2_digits", r"\boxed{0.33}", r"\frac13", False),
    ("big_ints_exact", r"\boxed{100000001}", "100000000", False),
    ("no_answer", "I give up.", "3", False),
    ("fallback_off_by_default", "the answer is 3", "3", False),
]


@pytest.mark.parametrize("completion,gold,expected", [c[1:] for c in GRADE_CASES],
                         ids=[c[0] for c in GRADE_CASES])
def test_grade_table(ver, completion, gold, expected):
    assert ver.grade(completion, gold) is expected


def test_fallback_last_number_per_call_and_per_verifier(ver):
    assert ver.grade("the answer is 3", "3", fallback_last_number=True) is True
    with Verifier(timeout=TIMEOUT, fallback_last_number=True) as v:
        assert v.grade("the answer is 3", "3") is True  # exact match: no worker needed
        assert v.worker_pid is None


def test_exact_match_skips_the_worker():
    with Verifier(timeout=TIMEOUT) as v:
        comps = [r"\boxed{3}", r"\boxed{x^2}", "#### 1,234", r"\boxed{$\dfrac{1}{2}$.}"]
        assert v.grade_batch(comps, ["3", "x^2", "1234", r"\frac{1}{2}"]) == [True] * 4
        assert v.worker_pid is None  # never started: strings matched after normalisation


def test_answer_length_cap(ver):
    long = "1+" * 15 + "1"  # 31 chars, equal to 16: cheap to parse, so no time-out can flip it
    assert ver.grade(r"\boxed{" + long + "}", "16") is True
    with Verifier(timeout=10.0, max_answer_chars=20) as v:
        assert v.grade(r"\boxed{" + long + "}", "16") is False    # over the cap: not parsed
        assert v.grade(r"\boxed{" + "1+15" + "}", "16") is True


def test_grade_batch_shapes(ver):
    comps = [r"\boxed{0.5}", r"\boxed{2}", "nothing", None]
    assert ver.grade_batch(comps, r"\frac{1}{2}") == [True, False, False, False]  # one shared gold
    assert ver.grade_batch(comps, [r"\frac12", "2", "3", "4"]) == [True, True, False, False]
    assert ver.grade_batch(comps, ["1", "2"]) == [False] * 4  # length mismatch: all False
    assert ver.grade_batch([], "1") == []
    assert ver.grade_batch((c for c in comps[:2]), "2") == [False, True]  # any iterable


def test_module_level_functions_and_rewards():
    assert V.grade(r"\boxed{0.5}", r"\frac{1}{2}") is True
    assert V.grade_batch([r"\boxed{1}", r"\boxed{2}"], "2", timeout=TIMEOUT) == [False, True]
    assert V.reward(r"\boxed{2}", "2") == 1.0
    assert V.reward(r"\boxed{3}", "2") == 0.0
    assert V.reward(r"\boxed{3}", "2", correct=1.0, wrong=-1.0) == -1.0
    assert V.reward("the answer is 2", "2", fallback_last_number=True) == 1.0
    assert V.rewards([r"\boxed{2}", "no", r"\boxed{4/2}"], "2", wrong=-0.5) == [1.0, -0.5, 1.0]


@pytest.mark.parametrize("completion,gold", [
    (None, "3"), (3, "3"), (b"\\boxed{3}", "3"), ([r"\boxed{3}"], "3"), (r"\boxed{3}", None),
    (r"\boxed{3}", 3), (r"\boxed{3}", 3.0), (object(), object()), (r"\boxed{3}", ""),
])
def test_non_string_inputs_are_false(ver, completion, gold):
    assert ver.grade(completion, gold) is False
    assert V.reward(completion, gold) == 0.0


def test_grade_batch_bad_containers(ver):
    assert ver.grade_batch(None, "1") == []
    assert ver.grade_batch([r"\boxed{1}"], None) == [False]
    assert ver.grade_batch([r"\boxed{1}", r"\boxed{1}"], 1) == [False, False]
    assert ver.grade_batch([r"\boxed{1}"], "1", timeout="soon") == [False]


# ----------------------------------------------------------------------------------------
# hostile strings: a bool, no exception, bounded time -- on the main thread and in threads
# ----------------------------------------------------------------------------------------

HOSTILE = [
    # (id, completion, gold, expected verdict)
    ("empty", "", "1", False),
    ("empty_gold", r"\boxed{1}", "", False),
    ("none", None, "1", False),
    ("mb_text", "blah 7 " * 150_000, "7", False),
    ("mb_text_then_answer", "blah 7 " * 150_000 + r"\boxed{7}", "7", True),
    ("mb_inside_boxed", r"\boxed{" + "x" * 1_000_000 + "}", "x", False),
    ("unbalanced", r"\boxed{", "1", False),
    ("nested_10k", r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "1", False),
    ("tower_10", r"\boxed{10^{10^{10^{10}}}}", "1", False),
    ("tower_9_vs_1", r"\boxed{9^{9^{9^{9}}}}", "1", False),
    ("big_power", r"\boxed{3^{100000000}}", "2", False),
    ("factorial", r"\boxed{100000000!}", "1", False),
    ("huge_int_100k_digits", r"\boxed{" + "9" * 100_000 + "}", "1", False),
    ("huge_int_500_digits", r"\boxed{" + "9" * 500 + "}", "1" + "0" * 500 + "-1", True),
    ("huge_int_off_by_one", r"\boxed{" + "9" * 500 + "}", "1" + "0" * 500, False),  # exact ints
    ("unicode_fullwidth", "\\boxed{\uff13}", "3", False),
    ("unicode_text", "答案是 \\boxed{\\frac{1}{2}} 🙂", "0.5", True),
    ("unicode_gold", r"\boxed{3}", "\u00bd", False),
    ("nul_bytes", "\x00\\boxed{3\x00}\x00", "3", True),  # math-verify ignores the NUL
    ("control_chars", "\x1b[31m\\boxed{3}\x07\r\n", "3", True),
    ("lone_surrogate", "\\boxed{\ud800}", "3", False),
    ("half_vs_frac", r"\boxed{0.5}", r"\frac{1}{2}", True),  # needs math-verify: proves it ran
    ("equation", r"\boxed{x=3}", "3", True),
]


def _grade_timed(v, completion, gold):
    t = time.perf_counter()
    out = v.grade(completion, gold)
    return out, time.perf_counter() - t


@pytest.mark.parametrize("completion,gold,expected", [c[1:] for c in HOSTILE],
                         ids=[c[0] for c in HOSTILE])
def test_hostile_main_thread(ver, completion, gold, expected):
    out, dt = _grade_timed(ver, completion, gold)
    assert type(out) is bool
    assert out is expected
    assert dt < BOUND


def test_hostile_from_a_thread(ver):
    # math-verify's own signal.alarm timeouts raise ValueError off the main thread; ours do not.
    results = []
    th = threading.Thread(
        target=lambda: results.extend(_grade_timed(ver, c, g) for _, c, g, _ in HOSTILE))
    th.start()
    th.join(timeout=len(HOSTILE) * BOUND)
    assert not th.is_alive()
    assert [out for out, _ in results] == [e for *_, e in HOSTILE]
    assert max(dt for _, dt in results) < BOUND


def test_hostile_from_four_threads_at_once(ver):
    # Calls are serialised by the Verifier's lock, so one call may wait for the three others.
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(_grade_timed, ver, c, g) for _, c, g, _ in HOSTILE * 2]
        results = [f.result(timeout=len(futures) * BOUND) for f in futures]
    assert [out for out, _ in results] == [e for *_, e in HOSTILE * 2]
    assert max(dt for _, dt in results) < 4 * BOUND
    # Only a handful of answers may use their whole time budget; the rest are milliseconds.
    assert time.perf_counter() - t < 2 * 8 * TIMEOUT + 10


def test_shared_verifier_from_many_threads_gives_each_its_own_answer(ver):
    # A race in the pipe protocol would hand one thread's verdict to another.
    jobs = [(rf"\boxed{{{i / 4}}}", rf"\frac{{{i}}}{{4}}", True) for i in range(1, 13)]
    jobs += [(rf"\boxed{{{i}}}", rf"\frac{{{i}}}{{4}}", False) for i in range(1, 13)]
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(lambda j: ver.grade_batch([j[0]] * 3, j[1]), jobs))
    assert outs == [[e] * 3 for *_, e in jobs]


# ----------------------------------------------------------------------------------------
# the worker freezes or dies: the parent's hard bound and the restart
# ----------------------------------------------------------------------------------------


def test_frozen_worker_is_killed_and_replaced():
    # SIGSTOP stands in for a worker stuck in C code that no signal handler can interrupt.
    with Verifier(timeout=TIMEOUT) as v:
        assert v.grade(r"\boxed{0.5}", r"\frac{1}{2}") is True
        pid = v.worker_pid
        os.kill(pid, signal.SIGSTOP)
        out, dt = _grade_timed(v, r"\boxed{0.25}", r"\frac{1}{4}")
        assert out is False and dt < TIMEOUT + 3.0
        assert v.restarts == 1 and v.worker_pid != pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the frozen worker is gone (killed and reaped)
        assert v.grade(r"\boxed{0.25}", r"\frac{1}{4}") is True  # the new worker grades


def test_batch_continues_after_a_frozen_worker():
    with Verifier(timeout=TIMEOUT) as v:
        assert v.grade(r"\boxed{0.5}", r"\frac{1}{2}") is True
        os.kill(v.worker_pid, signal.SIGSTOP)
        comps = [r"\boxed{0.5}", r"\boxed{0.5}", r"\boxed{2}"]
        out = v.grade_batch(comps, [r"\frac12", r"\frac12", "4/2"])
        assert out == [False, True, True]  # only the answer caught by the freeze is lost


def test_dead_worker_is_restarted():
    with Verifier(timeout=TIMEOUT) as v:
        assert v.grade(r"\boxed{0.5}", r"\frac{1}{2}") is True
        os.kill(v.worker_pid, signal.SIGKILL)
        time.sleep(0.2)
        assert v.grade(r"\boxed{0.5}", r"\frac{1}{2}") is True  # noticed before sending
        assert v.grade(r"\boxed{2}", r"\frac{4}{2}") is True


def test_close_stops_the_worker_and_is_reusable():
    v = Verifier(timeout=TIMEOUT)
    assert v.grade(r"\boxed{0.5}", r"\frac{1}{2}") is True
    pid = v.worker_pid
    v.close()
    assert v.worker_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert v.grade(r"\boxed{0.5}", r"\frac{1}{2}") is True  # starts a new worker
    v.close()
    v.close()  # idempotent


# ----------------------------------------------------------------------------------------
# fuzzing
# ----------------------------------------------------------------------------------------

_TOKENS = list("0123456789{}\\^_$#,.-+*/()[]|=x ") + [
    r"\boxed{", r"\fbox{", r"\boxed ", r"\frac", r"\sqrt", r"\left(", r"\right)", "####",
    "^{", "10^{10^{", r"\infty", r"\cup", r"\pi", r"\text{", "\x00", "½", "\n", r"\{", r"\}",
]
latexish = st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)
anything = st.one_of(latexish, st.text(max_size=80), st.none(), st.integers())


golds = st.one_of(latexish, st.sampled_from(["3", r"\frac{1}{2}", "x=2", "[1,2)"]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(completion=anything, gold=golds)
def test_fuzz_grade_always_a_bool_in_bounded_time(ver, completion, gold):
    t = time.perf_counter()
    out = ver.grade(completion, gold, timeout=0.5, fallback_last_number=True)
    assert type(out) is bool
    assert time.perf_counter() - t < 0.5 + 5.0


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(latexish, st.text()))
def test_fuzz_extract_and_normalize_are_total(text):
    ans = extract_answer(text, fallback_last_number=True)
    assert ans is None or isinstance(ans, str)
    boxed = extract_answer(text)
    if boxed is not None and "####" not in text:
        assert boxed in text  # a box's content is a substring of the text
    norm = normalize_answer(text)
    assert isinstance(norm, str) and len(norm) <= len(text)


# ----------------------------------------------------------------------------------------
# inside a training process: torch threads, unguarded scripts, forked daemonic workers
# ----------------------------------------------------------------------------------------


def test_grade_next_to_busy_torch_threads(ver):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    x = torch.randn(256, 256)
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        mm = pool.submit(lambda: [x @ x for _ in range(20)])
        verdict = pool.submit(ver.grade, r"\boxed{0.5}", r"\frac{1}{2}")
        assert verdict.result(timeout=BOUND) is True
        mm.result()


_SCRIPT = r'''
import multiprocessing as mp
from sgopd_lite.verifier import grade

# No `if __name__ == "__main__":` guard, on purpose: a spawn-based worker would re-run this.
print("top-level", grade(r"\boxed{0.5}", r"\frac{1}{2}"), flush=True)

def child(q):
    q.put(grade(r"\boxed{0.25}", r"\frac{1}{4}"))

# A forked daemonic process, like a DataLoader worker: multiprocessing may not start children
# there, and the parent's worker pipe must not be shared.
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,), daemon=True)
p.start()
print("daemon-child", q.get(timeout=60), flush=True)
p.join(10)
print("parent-after-fork", grade(r"\boxed{2}", r"\frac{4}{2}"), flush=True)
'''


def test_unguarded_script_and_forked_daemon_child(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "train_like.py"
    script.write_text(_SCRIPT)
    root = str(V._PACKAGE_ROOT)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "top-level True", "daemon-child True", "parent-after-fork True"], out.stdout + out.stderr
