"""Evaluation: per-sample accuracy avg@n and per-question accuracy pass@k (docs/method.md §9).

avg@n  = mean over problems of (correct samples / n)
pass@k = mean over problems of 1 - C(n - c, k) / C(n, k), the unbiased estimator of Chen et al.
         (2021) from n >= k samples of which c are correct.

Accuracy per skill: arithmetic problems are labelled by what they need (`data.skill_of`:
carry, borrow, both, none), and every result carries avg@n per label with its number of
problems. A mean that does not move can hide a skill gained and another lost.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .data import DEFAULT_INSTRUCTION, SKILLS, Problem, format_prompt, skill_of, slip_counts
from .rollout import sample
from .verifier import grade_batch


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with c correct out of n samples (requires n >= k)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    # 1 - prod_{i = n-c+1}^{n} (1 - k / i), the numerically stable form of the ratio of binomials
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass
class EvalResult:
    """Scores of one model on one problem set."""

    avg_at_n: float
    pass_at_k: float
    n: int
    k: int
    num_problems: int
    seconds: float
    per_problem_correct: list[int] = field(default_factory=list)
    mean_response_tokens: float = 0.0
    truncation_rate: float = 0.0
    per_skill: dict = field(default_factory=dict)   # skill -> {"avg": avg@n, "problems": count};
                                                    # empty when no problem has a skill label
    steps: dict = field(default_factory=dict)       # with a step checker: for kind in (carry,
                                                    # borrow) {kind}_steps (sampled steps that need
                                                    # it) and {kind}_slips (of those, forgotten)

    def as_dict(self) -> dict:
        return {f"avg@{self.n}": self.avg_at_n, f"pass@{self.k}": self.pass_at_k,
                "n": self.n, "k": self.k, "problems": self.num_problems, "seconds": self.seconds,
                "mean_response_tokens": self.mean_response_tokens,
                "truncation_rate": self.truncation_rate, "per_skill": self.per_skill, "steps": self.steps}

    def slip_rate(self, kind: str) -> float:
        """Error adoption: the share of sampled steps needing a `kind` ("carry" / "borrow") whose
        result is the forgotten-`kind` one (NaN without a step checker or such steps)."""
        n = self.steps.get(f"{kind}_steps", 0)
        return self.steps[f"{kind}_slips"] / n if n else math.nan

    def skill_rows(self) -> list[str]:
        """One Markdown table row per skill: | skill | problems | avg@n |."""
        return [f"| {s} | {v['problems']} | {v['avg']:.3f} |" for s, v in self.per_skill.items()]


def per_skill_accuracy(problems: list[Problem], correct: list[int], n: int) -> dict:
    """avg@n and the number of problems for each skill label present (in SKILLS order)."""
    by_skill: dict[str, list[float]] = {}
    for p, c in zip(problems, correct):
        label = skill_of(p.question)
        if label is not None:
            by_skill.setdefault(label, []).append(c / n)
    return {s: {"avg": float(np.mean(by_skill[s])), "problems": len(by_skill[s])}
            for s in SKILLS if s in by_skill}


def skills_from_metrics(metrics: dict, n: int) -> dict[str, float]:
    """{skill: avg@n} from a trainer's eval metrics (`eval_avg@{n}_{skill}` keys), SKILLS order."""
    return {s: metrics[f"eval_avg@{n}_{s}"] for s in SKILLS if f"eval_avg@{n}_{s}" in metrics}


def skill_table(rows: dict[str, dict[str, float]], counts: dict[str, int], n: int) -> str:
    """A Markdown table, one row per model and one column per skill: avg@n on the problems that
    need that skill, the number of problems in each column's header. `rows`: {name: {skill: avg}}
    (`EvalResult.per_skill` read as {s: v["avg"]}, or `skills_from_metrics`)."""
    skills = [s for s in SKILLS if s in counts]
    lines = [f"| model (avg@{n}) | " + " | ".join(f"{s} ({counts[s]})" for s in skills) + " |",
             "|---|" + "---|" * len(skills)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[s]:.3f}" if s in values else "-" for s in skills) + " |")
    return "\n".join(lines)


def evaluate(model, tokenizer, problems: list[Problem], n: int = 8, k: int | None = None,
             temperature: float = 1.0, max_new_tokens: int = 64, batch_size: int = 256,
             instruction: str = DEFAULT_INSTRUCTION, top_p: float = 1.0,
             vocab_size: int | None = None, step_checker=None) -> EvalResult:
    """Sample n responses per problem, grade them, and score avg@n and pass@k (k defaults to n).

    step_checker: a world's (question, response) -> list of data.Step (the tiny world's
    `data.check_steps`): then every sample's steps are counted, and each forgotten carry or
    borrow (`EvalResult.steps`, `slip_rate`): how far a student adopted a teacher's error."""
    k = n if k is None else k
    if k > n:
        raise ValueError(f"pass@{k} needs n >= k samples per problem, got n={n}")
    start = time.perf_counter()
    prompts = [format_prompt(tokenizer, p.question, instruction) for p in problems]
    correct: list[int] = []
    lengths, truncated = [], []
    steps = slip_counts([]) if step_checker is not None else {}
    per_call = max(1, batch_size // n)
    for s in range(0, len(prompts), per_call):
        batch = problems[s:s + per_call]
        ro = sample(model, tokenizer, prompts[s:s + per_call], num_samples=n,
                    max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    vocab_size=vocab_size)
        golds = [p.answer for p in batch for _ in range(n)]
        verdicts = grade_batch(ro.texts, golds)
        correct += [sum(verdicts[i * n:(i + 1) * n]) for i in range(len(batch))]
        lengths += ro.response_mask.sum(1).tolist()
        truncated += ro.truncated.tolist()
        if step_checker is not None:
            for text, question in zip(ro.texts, [p.question for p in batch for _ in range(n)]):
                for key, count in slip_counts(step_checker(question, text)).items():
                    steps[key] += count
    return EvalResult(
        avg_at_n=float(np.mean([c / n for c in correct])) if correct else math.nan,
        pass_at_k=float(np.mean([pass_at_k(n, c, k) for c in correct])) if correct else math.nan,
        n=n, k=k, num_problems=len(problems), seconds=time.perf_counter() - start,
        per_problem_correct=correct, mean_response_tokens=float(np.mean(lengths)) if lengths else 0.0,
        truncation_rate=float(np.mean(truncated)) if truncated else 0.0,
        per_skill=per_skill_accuracy(problems, correct, n), steps=steps)
