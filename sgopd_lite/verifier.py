"""Answer verifier: extract the final answer from a completion, grade it, shape a reward.

This is the outcome signal of the RL side of SG-OPD: a rollout is *correct* when its final
answer is mathematically equal to the gold answer. The chain is four small functions, each
testable from literal strings:

    extract_answer(text)        -> "\\frac{1}{2}"   (last \\boxed{...}, else "#### n", else None)
    normalize_answer(s)         -> light, always-safe cleanup ("$1,234.$" -> "1234")
    grade(completion, gold)     -> bool             (string equality, else math-verify)
    reward(completion, gold)    -> float            (binary 1.0 / 0.0 by default)

Choices this project makes (the paper only says "rule-based verifier"):

* **Which answer.** The LAST ``\\boxed{...}`` / ``\\fbox{...}`` decides, found with a linear
  balanced-brace scan. If that last box is never closed (a truncated rollout), there is no
  boxed answer: we do not fall back to an earlier box. Then a GSM8K-style ``#### n``; the
  "last number in the text" fallback is opt-in (``fallback_last_number=True``) because it
  rewards rollouts that never committed to an answer.
* **Exact match first.** Equal strings after normalisation are True without sympy (all 500
  MATH-500 gold solutions and every clean GSM8K answer take this path).
* **How math-verify sees it.** Otherwise both sides are wrapped in ``$...$`` and compared with
  ``verify(parse(gold), parse(pred))``; see ``_wrap`` for why, with the measured numbers.
* **Length cap.** Answers (pred or gold) longer than ``max_answer_chars`` (1000) are graded
  False without parsing: no real final answer is that long, and sympy time grows with it.
* **Never raises, never hangs.** math-verify's built-in timeouts use ``signal.alarm``, which
  raises ValueError off the main thread; sympy can spend unbounded time on inputs such as
  ``10^{10^{10^{10}}}``; and work inside C code (big-integer arithmetic) cannot be interrupted
  by any signal handler. So math-verify runs in one small persistent worker process, a fresh
  ``python -c`` interpreter (never a fork, so it is safe next to torch threads; not
  multiprocessing's "spawn", see ``_WORKER_BOOT``), talking over a multiprocessing Pipe.
  The parent waits at most ``timeout`` seconds per answer (``conn.poll``); on time-out it kills
  the worker (SIGTERM, then SIGKILL), grades that answer False and starts a fresh worker. The
  clock starts only once the worker says "ready", so start-up is never charged to an answer.
  Inside the worker, a softer ``setitimer`` alarm at 80% of the budget interrupts slow
  pure-Python sympy work cleanly, which avoids most restarts. A lock serialises callers, so any
  number of threads may share one ``Verifier`` (a batch of N answers may take N * timeout).
  Non-string inputs (None, ints, ...) are graded False. KeyboardInterrupt still propagates.
* **Clean-up.** ``close()`` (or ``with Verifier() as v:``) stops the worker; an ``atexit`` hook
  closes every open Verifier, and a worker whose parent has gone exits when its pipe closes.

May import: the standard library and math-verify (the ground floor: pure functions).
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path

__all__ = [
    "Verifier",
    "extract_answer",
    "normalize_answer",
    "grade",
    "grade_batch",
    "reward",
    "rewards",
]

# ----------------------------------------------------------------------------------------
# 1. Extraction
# ----------------------------------------------------------------------------------------

# `\boxed` or `\fbox` as a whole control word (so `\boxedx` does not count).
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# `\boxed 5` : no braces, one token (TeX would take one character; models mean the token).
_BOX_TOKEN_RE = re.compile(r"\s*([^\s${}]+)")
# Braces that group, with `\\` and escaped `\{ \}` consumed first so they are not counted.
_BRACE_RE = re.compile(r"\\\\|\\[{}]|[{}]")
# GSM8K: "#### 1,234" (an optional `$` before the number is tolerated).
_HASH_RE = re.compile(r"####\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)")
# Any number, with optional thousands groups: 12, -3.5, 1,234,567.
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def _braced_content(text: str, open_pos: int) -> str | None:
    """Content of the group whose ``{`` is at ``text[open_pos]``; None if never closed.

    Linear in the length of the text: the regex jumps from brace to brace.
    """
    depth = 0
    for m in _BRACE_RE.finditer(text, open_pos):
        tok = m.group()
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0:
                return text[open_pos + 1 : m.start()]
        # `\\`, `\{`, `\}` are literal text, not grouping.
    return None


def _last_boxed(text: str) -> str | None:
    """Content of the LAST ``\\boxed``/``\\fbox`` in ``text``; None if absent or unbalanced."""
    last = None
    for last in _BOX_RE.finditer(text):  # keep only the last match (linear scan)
        pass
    if last is None:
        return None
    pos = last.end()
    # Skip whitespace between `\boxed` and its argument.
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos < len(text) and text[pos] == "{":
        return _braced_content(text, pos)
    if pos == last.end():  # `\boxed5` is legal TeX but almost always a typo/garbage
        return None
    m = _BOX_TOKEN_RE.match(text, last.end())
    if m is None:
        return None
    # `\boxed 5.` / `\boxed 5,` : sentence punctuation is not part of the token.
    return m.group(1).rstrip(".,;:") or None


def extract_answer(text: str, fallback_last_number: bool = False) -> str | None:
    """Final answer of a completion, as a raw string (not normalised).

    Priority: (1) the content of the LAST ``\\boxed{...}`` or ``\\fbox{...}`` (nested braces
    balanced; ``\\boxed 5`` with a single token also counts; an unclosed last box gives no
    boxed answer), (2) the number after the last GSM8K ``####`` with commas removed,
    (3) only if ``fallback_last_number``, the last number in the text (commas removed).

    Args:
        text: the completion (any length; the scan is linear).
        fallback_last_number: also accept the last number in the text as the answer.

    Returns:
        The answer string, or None when nothing was found (or ``text`` is not a str).

    Example:
        >>> extract_answer(r"so $x = \\boxed{\\frac{1}{2}}$.")
        '\\\\frac{1}{2}'
    """
    if not isinstance(text, str):
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    last = None
    for last in _HASH_RE.finditer(text):
        pass
    if last is not None:
        return last.group(1).replace(",", "")
    if fallback_last_number:
        for last in _NUMBER_RE.finditer(text):
            pass
        if last is not None:
            return last.group().replace(",", "")
    return None


# ----------------------------------------------------------------------------------------
# 2. Normalisation (only rewrites that can never turn a wrong answer into a right one)
# ----------------------------------------------------------------------------------------

_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")  # 1,234,567 but not 1,2
_SPACING_RE = re.compile(r"\\\\|\\[!,;:]")  # \! \, \; \: (but `\\`, a line break, stays)
_DELIMS = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def normalize_answer(s: str) -> str:
    """Light clean-up of an answer string before comparison.

    Removes ``{,}`` -> ``,`` and LaTeX spacing (``\\! \\, \\; \\:``); maps ``\\dfrac`` and
    ``\\tfrac`` to ``\\frac``; strips whitespace, surrounding math delimiters (``$..$``,
    ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``) and a trailing period; finally removes
    thousands-separator commas only when the whole answer is one number (``1,234,567`` ->
    ``1234567``, but ``1,2`` is a set or an interval and stays). Anything riskier is left to
    math-verify. Every rewrite shortens the string, and the cost is linear in its length.

    Args:
        s: a raw answer string. Non-strings give "".

    Returns:
        The cleaned string (possibly "").

    Example:
        >>> normalize_answer(" $1,234.$ ")
        '1234'
    """
    if not isinstance(s, str):
        return ""
    s = s.replace("{,}", ",")
    s = _SPACING_RE.sub(lambda m: m.group() if m.group() == "\\\\" else "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").strip()
    # "$$ 5 $$." -> "5". A few rounds cover real answers; the bound keeps "$$$$...$" linear.
    for _ in range(4):
        before = s
        if s.endswith(".") and not s.endswith(".."):  # but keep "1, 2, ..."
            s = s[:-1].rstrip()
        for left, right in _DELIMS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : -len(right)].strip()
        if s == before:
            break
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s


# ----------------------------------------------------------------------------------------
# 3. math-verify, in the worker process
# ----------------------------------------------------------------------------------------


def _wrap(answer: str) -> str:
    """How an (already extracted, normalised) answer is shown to ``math_verify.parse``.

    ``$...$`` says "this whole string is one LaTeX expression". Without delimiters, parse
    falls back to grabbing a number-like piece: ``parse("8n^2 + 4n + 1")`` gives ``1``,
    ``parse("3\\sqrt{13}")`` gives ``3`` and ``parse("p - q")`` gives nothing. That is why plain
    ``verify(parse(answer), parse(solution))`` with MATH-500 answers as stored accepts only
    392/500 gold solutions. Measured on MATH-500 after our extraction and normalisation, with
    the exact-match shortcut switched off so that every pair reaches math-verify
    (shuffled = solution i against answer i+1; plain = ``verify(parse(answer), parse(sol))``):

        pred / gold     gold solutions   shuffled: accepted / agree with plain
        $..$ / $..$     500/500          3 / 499 (*)
        boxed / boxed   500/500          3 / 499 (*)
        bare / $..$     394/500          3 / 499 (*)
        $..$ / bare     395/500          4 / 500
        bare / bare     451/500          4 / 500

    (*) the one disagreement is plain math-verify reading the gold "8n^2 + 4n + 1" as 1.
    ``$..$`` and ``\\boxed{..}`` behave the same; ``$..$`` is the simpler of the two.
    """
    return "$" + answer + "$"


class _SoftTimeout(BaseException):
    """Raised by the worker's own alarm. BaseException so math-verify's ``except Exception``
    blocks cannot swallow it and carry on computing."""


def _on_alarm(signum, frame):
    raise _SoftTimeout


def _verify_one(pred: str, gold: str, soft_timeout: float) -> bool:
    """``verify(parse(gold), parse(pred))`` under a soft alarm; runs in the worker only."""
    from math_verify import parse, verify

    signal.setitimer(signal.ITIMER_REAL, soft_timeout)
    try:
        # math-verify's own signal timeouts are switched off (None): they would re-arm and then
        # cancel the one process-wide alarm that our soft timeout uses.
        g = parse(_wrap(gold), parsing_timeout=None)
        p = parse(_wrap(pred), parsing_timeout=None)
        return bool(verify(g, p, timeout_seconds=None))
    except _SoftTimeout:
        return False
    except Exception:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _worker_main(conn) -> None:
    """Entry point of the worker process (module level: the ``_WORKER_BOOT`` line imports it).

    Protocol: send "ready" once math-verify is imported and warm; then each message is
    ``(soft_timeout, [(pred, gold), ...])`` and is answered with one bool per pair, sent one
    by one as soon as each is known. ``None`` asks the worker to exit.
    """
    import logging

    # It warns that timeouts are off; we know, the parent process enforces them.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent to handle
    _verify_one("1/2", "0.5", 60.0)  # imports sympy & co. now, so no answer pays for it
    try:
        conn.send("ready")
        while True:
            msg = conn.recv()
            if msg is None:
                return
            soft_timeout, jobs = msg
            for pred, gold in jobs:
                try:
                    ok = _verify_one(pred, gold, soft_timeout)
                except _SoftTimeout:  # the alarm hit just as _verify_one was returning
                    ok = False
                conn.send(ok)
    except (EOFError, OSError):  # the parent is gone: nothing left to do
        return


# ----------------------------------------------------------------------------------------
# 4. The parent side: a Verifier owns one worker and bounds every answer in time
# ----------------------------------------------------------------------------------------

# Why not multiprocessing's "spawn"? It re-imports the caller's __main__ in the child: a
# training script without `if __name__ == "__main__":` would run again inside the worker,
# and a guarded one still drags torch & co. into every (re)started worker. multiprocessing
# also refuses to start children from daemonic processes (e.g. DataLoader workers). A plain
# `python -c` subprocess gives the same fresh interpreter, imports only this module, and
# talks over the same multiprocessing Connection.
_WORKER_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[2]); "
    "from multiprocessing.connection import Connection; "
    "from sgopd_lite.verifier import _worker_main; "
    "_worker_main(Connection(int(sys.argv[1])))"
)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder holding sgopd_lite/
_LIVE: weakref.WeakSet = weakref.WeakSet()  # every open Verifier, closed at interpreter exit


class Verifier:
    """Grades completions against gold answers; safe from any thread, bounded in time.

    Args:
        timeout: seconds math-verify may spend on one answer before it is graded False.
        fallback_last_number: default for ``extract_answer``'s last-number fallback.
        max_answer_chars: answers (pred or gold) longer than this are graded False unparsed.
        startup_timeout: seconds to wait for a (re)started worker; not charged to any answer.

    Use as ``with Verifier() as v: v.grade(text, "3")`` or keep one and call ``close()``.
    """

    def __init__(
        self,
        timeout: float = 2.0,
        fallback_last_number: bool = False,
        max_answer_chars: int = 1000,
        startup_timeout: float = 120.0,
    ):
        self.timeout = float(timeout)
        self.fallback_last_number = fallback_last_number
        self.max_answer_chars = max_answer_chars
        self.startup_timeout = startup_timeout
        self.restarts = 0  # workers replaced after a time-out or a crash (worth logging)
        self._lock = threading.Lock()
        self._proc = None  # the worker process
        self._conn = None  # our end of the pipe to it
        self._ready = False  # has the worker sent "ready" yet?
        self._pid = os.getpid()  # a fork of this process must not share our worker
        _LIVE.add(self)

    # -- public API ------------------------------------------------------------------------

    def grade(self, completion, gold, *, timeout=None, fallback_last_number=None) -> bool:
        """True iff the completion's final answer equals ``gold``; never raises, never hangs.

        Args:
            completion: the model's text (non-strings are graded False).
            gold: the gold answer string, e.g. ``"\\frac{1}{2}"`` (not a full solution).
            timeout: per-call override of ``self.timeout`` (seconds).
            fallback_last_number: per-call override of the extraction fallback.
        """
        return self.grade_batch(
            [completion], gold, timeout=timeout, fallback_last_number=fallback_last_number
        )[0]

    def grade_batch(
        self, completions, golds, *, timeout=None, fallback_last_number=None
    ) -> list[bool]:
        """One verdict per completion.

        Args:
            completions: sequence of N completion strings.
            golds: a sequence of N gold answers, or one string shared by the whole group
                (the usual GRPO case: N rollouts of one prompt).
            timeout, fallback_last_number: per-call overrides, as in ``grade``.

        Returns:
            list of N bools. If the lengths disagree, every verdict is False.
        """
        try:
            completions = list(completions)
        except Exception:
            return []
        try:
            if isinstance(golds, str):
                golds = [golds] * len(completions)
            else:
                try:
                    golds = list(golds)
                except TypeError:  # None, an int, ...: one (invalid) gold for everyone
                    golds = [golds] * len(completions)
            if len(golds) != len(completions):
                return [False] * len(completions)
            timeout = self.timeout if timeout is None else float(timeout)
            fallback = (
                self.fallback_last_number if fallback_last_number is None else fallback_last_number
            )
            verdicts = [False] * len(completions)
            todo = []  # (index, pred, gold) that need math-verify
            for i, (text, g) in enumerate(zip(completions, golds)):
                pred = normalize_answer(extract_answer(text, fallback) or "")
                g = normalize_answer(g)
                if not pred or not g:
                    continue
                if len(pred) > self.max_answer_chars or len(g) > self.max_answer_chars:
                    continue
                if pred == g:  # identical strings need no sympy
                    verdicts[i] = True
                else:
                    todo.append((i, pred, g))
            if todo:
                with self._lock:
                    results = self._run_jobs([(p, g) for _, p, g in todo], timeout)
                for (i, _, _), ok in zip(todo, results):
                    verdicts[i] = ok
            return verdicts
        except Exception:  # the promise is a verdict for every string, whatever happens
            return [False] * len(completions)

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker (None before the first math-verify call)."""
        proc = self._proc
        return None if proc is None else proc.pid

    def close(self) -> None:
        """Stop the worker process (a later call starts a new one)."""
        with self._lock:
            self._stop_worker(polite=True)

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- worker management (caller holds self._lock) -----------------------------------------

    def _run_jobs(self, jobs: list[tuple[str, str]], timeout: float) -> list[bool]:
        """Send all jobs to the worker at once and read verdicts as they arrive.

        Each verdict must arrive within ``timeout`` of the previous one. On time-out (or a dead
        worker) the job at hand is False, the worker is killed and a fresh one gets the rest.
        We only ever send to an idle worker, so the send never blocks on a full pipe.
        """
        verdicts = [False] * len(jobs)
        start = 0
        while start < len(jobs):
            if not self._ensure_ready():
                break  # could not start a worker: the remaining jobs stay False
            i, clean = start, False
            try:
                self._conn.send((0.8 * timeout, jobs[start:]))
                while i < len(jobs):
                    if not self._conn.poll(timeout):
                        break
                    verdicts[i] = bool(self._conn.recv())
                    i += 1
                clean = i == len(jobs)
            except (EOFError, OSError, ValueError):  # worker died (crash, OOM kill, ...)
                pass
            finally:
                # Also on KeyboardInterrupt: a half-read worker would answer the wrong job next.
                if not clean:
                    self.restarts += 1
                    self._stop_worker(polite=False)
                    self._start_worker()  # starts now; we wait for "ready" only when needed
            start = i + 1  # job i (if any) is the one that overran or crashed: False
        return verdicts

    def _start_worker(self) -> None:
        # A fresh interpreter that imports only this module (see _WORKER_BOOT for why not
        # multiprocessing). Its end of the pipe is passed as an inherited file descriptor.
        parent, child = mp.Pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, str(child.fileno()), _PACKAGE_ROOT],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except Exception as e:
            warnings.warn(f"sgopd_lite.verifier: cannot start worker ({e!r}); grading False")
            parent.close()
            return
        finally:
            child.close()
        self._proc, self._conn, self._ready, self._pid = proc, parent, False, os.getpid()

    def _ensure_ready(self) -> bool:
        """Start the worker if needed and wait for its "ready" (bounded by startup_timeout)."""
        if self._pid != os.getpid():  # we were forked: that worker belongs to our parent
            if self._conn is not None:
                self._conn.close()  # closes only our copy of the descriptor
            self._proc = self._conn = None
            self._pid = os.getpid()
        if self._proc is None or self._proc.poll() is not None:
            self._stop_worker(polite=False)
            self._start_worker()
            if self._proc is None:
                return False
        if self._ready:
            return True
        deadline = time.monotonic() + self.startup_timeout
        try:
            while time.monotonic() < deadline and self._proc.poll() is None:
                if self._conn.poll(0.1):
                    self._ready = self._conn.recv() == "ready"
                    break
        except (EOFError, OSError):
            pass
        if not self._ready:
            warnings.warn("sgopd_lite.verifier: worker did not start in time; grading False")
            self._stop_worker(polite=False)
        return self._ready

    def _stop_worker(self, polite: bool) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._ready = False
        if proc is None:
            return
        if self._pid != os.getpid():  # not ours to stop (we are a fork)
            return
        try:
            if polite:
                conn.send(None)
                proc.wait(0.5)
        except Exception:
            pass
        for stop in (proc.terminate, proc.kill):  # SIGTERM ends it even inside C code
            if proc.poll() is None:
                try:
                    stop()
                    proc.wait(0.5)
                except Exception:
                    pass
        conn.close()


@atexit.register
def _close_all() -> None:
    for v in list(_LIVE):
        try:
            v.close()
        except Exception:
            pass


# ----------------------------------------------------------------------------------------
# 5. Module-level functions (a lazily created shared Verifier) and reward shaping
# ----------------------------------------------------------------------------------------

_default: Verifier | None = None
_default_lock = threading.Lock()


def _default_verifier() -> Verifier:
    global _default
    with _default_lock:
        if _default is None:
            _default = Verifier()
        return _default


def grade(completion, gold, *, timeout: float = 2.0, fallback_last_number: bool = False) -> bool:
    """True iff ``completion``'s final answer equals ``gold`` (see ``Verifier.grade``).

    Extract -> normalise -> exact string match (True, no sympy) -> else
    ``verify(parse($gold$), parse($pred$))`` in the shared worker, at most ``timeout`` s.
    Never raises; non-string inputs and over-long answers are False.
    """
    return _default_verifier().grade(
        completion, gold, timeout=timeout, fallback_last_number=fallback_last_number
    )


def grade_batch(
    completions, golds, *, timeout: float = 2.0, fallback_last_number: bool = False
) -> list[bool]:
    """One verdict per completion; ``golds`` is a list of equal length or one shared string."""
    return _default_verifier().grade_batch(
        completions, golds, timeout=timeout, fallback_last_number=fallback_last_number
    )


def reward(completion, gold, *, correct: float = 1.0, wrong: float = 0.0, **kw) -> float:
    """Scalar outcome reward: ``correct`` if ``grade(completion, gold, **kw)`` else ``wrong``.

    Binary by default (1.0 / 0.0); e.g. ``wrong=-1.0`` gives a symmetric +-1 reward.
    """
    return correct if grade(completion, gold, **kw) else wrong


def rewards(completions, golds, *, correct: float = 1.0, wrong: float = 0.0, **kw) -> list[float]:
    """``reward`` for a group of completions (one batched call). Shape: (N,) floats."""
    return [correct if ok else wrong for ok in grade_batch(completions, golds, **kw)]
