"""Problem sets with gold answers, and the one prompt format every model sees.

Sources (all return a list of `Problem`):

* `arithmetic_problems`: the project's own seeded task, multi-step integer arithmetic
  (`15-4+16`) with worked solutions that can be written in two *styles* and with an optional
  systematic *slip* (a forgotten carry). It is the tiny world's task: the style lets a student
  drift off the teacher's distribution (breaks docs/method.md §1 assumption A1) and the slip makes a
  teacher confidently wrong on some tokens (breaks A2). Fixed splits live in `sgopd_lite/assets/` (package data).
* `reasoning_gym_problems`: reasoning-gym's seeded generators (offline, from PyPI).
* `load_jsonl`: local files in the MATH-500 (`problem`/`solution`/`answer`) or GSM8K
  (`question`/`solution`/`answer`) layout. The optional folder holding such test sets
  (`math500_test.jsonl`, `gsm8k_test.jsonl`) is `real_data_dir()`, the one place its location is
  decided; what reads it (the verifier's real-data tests, benchmarks/bench_verifier.py,
  notebook 02) skips that part without it.
* `hub_problems`: hub datasets through `datasets.load_dataset`, for online users.

A row without a usable gold answer is an error that names the file (or dataset) and the row:
a silent empty answer would become a zero reward that looks like a wrong student.

Prompt format: the tokenizer's chat template around one user message, the question followed
by an instruction asking for the answer in `\\boxed{}` (`format_prompt`).

May import: assets, and reasoning-gym / datasets inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .assets import asset_dir

DEFAULT_INSTRUCTION = "Put the final answer in \\boxed{}."

# The package data (sgopd_lite/assets/, inside the wheel too): the arithmetic splits and the
# committed tiny models. Outputs never go here (assets.project_dir).
DATA_DIR = asset_dir()

# The optional real-data folder (MATH-500 / GSM8K test sets as JSONL, not shipped): the environment
# variable SGOPD_DATA_DIR when set, else `shared/data` in the folder that holds the repository
# (where this project's build machines keep it).
REAL_DATA_ENV = "SGOPD_DATA_DIR"


def real_data_dir() -> Path:
    """Where the optional real benchmark files are looked for (`REAL_DATA_ENV`); may not exist."""
    if os.environ.get(REAL_DATA_ENV):
        return Path(os.environ[REAL_DATA_ENV]).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Problem:
    """One problem with its gold answer. `solution`, when known, is a worked solution."""

    id: str
    question: str
    answer: str                 # gold final answer as a string ("27", "\\frac{1}{2}")
    solution: str | None = None
    source: str = ""


class DataError(ValueError):
    """A problem set that cannot be used as it is (missing file, field or gold answer)."""


# --------------------------------------------------------------------------------------------
# The prompt format
# --------------------------------------------------------------------------------------------

def build_messages(question: str, instruction: str = DEFAULT_INSTRUCTION) -> list[dict]:
    """The chat messages of one prompt: a single user turn, question then instruction."""
    content = f"{question}\n{instruction}" if instruction else question
    return [{"role": "user", "content": content}]


def format_prompt(tokenizer, question: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The prompt text a model is given: its chat template, ready for the assistant's turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"tokenizer {type(tokenizer).__name__} has no chat template; every model of "
                        "this project is prompted through one (set tokenizer.chat_template)")
    return tokenizer.apply_chat_template(build_messages(question, instruction), tokenize=False,
                                         add_generation_prompt=True)


# --------------------------------------------------------------------------------------------
# The project's own task: multi-step integer arithmetic
# --------------------------------------------------------------------------------------------

STYLES = ("chain", "prose")


@dataclass(frozen=True)
class ArithmeticTask:
    """Shape of the arithmetic problems: `a op b [op c ...]`, operands in [lo, hi]."""

    min_operand: int = 1    # smallest operand
    max_operand: int = 20   # largest operand (two-digit operands to 99 are too hard for ~1M params)
    min_terms: int = 2      # fewest operands
    max_terms: int = 3      # most operands
    ops: str = "+-"         # operators drawn uniformly


def sample_expression(rng: random.Random, task: ArithmeticTask = ArithmeticTask()
                      ) -> tuple[list[int], list[str]]:
    n = rng.randint(task.min_terms, task.max_terms)
    operands = [rng.randint(task.min_operand, task.max_operand) for _ in range(n)]
    ops = [rng.choice(task.ops) for _ in range(n - 1)]
    return operands, ops


def expression_text(operands: list[int], ops: list[str]) -> str:
    text = str(operands[0])
    for op, b in zip(ops, operands[1:]):
        text += f"{op}{b}"
    return text


def parse_expression(text: str) -> tuple[list[int], list[str]]:
    """Operands and operators of a question written by `expression_text` ("15-4+16")."""
    if not re.fullmatch(r"\d+(?:[-+*]\d+)+", text):
        raise DataError(f"{text!r} is not an arithmetic question of this project (like '15-4+16')")
    operands = [int(x) for x in re.findall(r"\d+", text)]
    return operands, re.findall(r"[-+*]", text)


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def has_carry(a: int, op: str, b: int) -> bool:
    """True for an addition of two non-negative numbers whose units digits carry."""
    return op == "+" and a >= 0 and b >= 0 and (a % 10 + b % 10) >= 10


def has_borrow(a: int, op: str, b: int) -> bool:
    """True for a subtraction a - b >= 0 with a >= 10 whose units digit needs a borrow."""
    return op == "-" and 10 <= a and 0 <= b <= a and a % 10 < b % 10


SKILLS = ("carry", "borrow", "both", "none")


def skill_of(question: str) -> str | None:
    """What an arithmetic problem needs, worked left to right as `solve` does: "carry" (some
    addition carries), "borrow" (some subtraction borrows), "both", or "none". None for a
    question that is not this project's arithmetic (MATH, GSM8K): it has no skill label.

    The committed held-out split has 65 carry, 28 borrow, 11 both and 152 none problems.
    """
    try:
        operands, ops = parse_expression(question)
    except DataError:
        return None
    acc, carry, borrow = operands[0], False, False
    for op, b in zip(ops, operands[1:]):
        carry |= has_carry(acc, op, b)
        borrow |= has_borrow(acc, op, b)
        acc = _apply(acc, op, b)
    return "both" if carry and borrow else "carry" if carry else "borrow" if borrow else "none"


def solve(operands: list[int], ops: list[str], style: str = "chain", slip: bool = False,
          borrow_slip: bool = False) -> tuple[str, int]:
    """A worked solution, left to right, one step per line, and its final value.

    style "chain":  15-4=11 / 11+16=27 / \\boxed{27}
    style "prose":  15-4 is 11 / 11+16 is 27 / so \\boxed{27}
    slip=True: every carrying addition forgets its carry (result 10 too small) and the rest of
    the solution continues from the wrong value, so the boxed answer is wrong too.
    borrow_slip=True: every borrowing subtraction forgets its borrow (result 10 too large).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    lines, acc = [], operands[0]
    for op, b in zip(ops, operands[1:]):
        value = _apply(acc, op, b)
        if slip and has_carry(acc, op, b):
            value -= 10
        if borrow_slip and has_borrow(acc, op, b):
            value += 10
        step = f"{acc}{op}{b}"
        lines.append(f"{step}={value}" if style == "chain" else f"{step} is {value}")
        acc = value
    lines.append(f"\\boxed{{{acc}}}" if style == "chain" else f"so \\boxed{{{acc}}}")
    return "\n".join(lines), acc


# --------------------------------------------------------------------------------------------
# Step checking: each line of a worked solution judged on its own operands
# --------------------------------------------------------------------------------------------

STEP_LINE = re.compile(r"(-?\d+)([-+*])(\d+)(=| is )(-?\d+)")   # a running value may be negative
BOXED_LINE = re.compile(r"(?:so )?\\boxed\{(-?\d+)\}")


@dataclass(frozen=True)
class Step:
    """One line of a response as `check_steps` judges it.

    start, end: its characters, response[start:end], the line's newline included.
    verdict:    +1 a correct step, -1 a wrong one, 0 not checkable (a last line cut off).
    slip:       "carry" / "borrow" when the line's result is the forgotten-carry (10 too small)
                or forgotten-borrow (10 too large) result of its own operands, else None.
    needs:      "carry" / "borrow" when the line's own operation carries or borrows, else None.
    first_wrong: in a wrong line, the offset in the response of its first wrong character (the
                first that departs from the line it should have been; a line that should not be
                there at all: its start), else None. What a checker that can point inside a line
                would give (step_unit="prefix").
    """

    start: int
    end: int
    verdict: int
    slip: str | None = None
    needs: str | None = None
    first_wrong: int | None = None


def check_steps(question: str, response: str) -> list[Step]:
    """Judge each line of a worked solution of `question` (either style) on its own operands.

    A step line `a op b = c` (or `a op b is c`) is correct when it is the question's next step
    continued from the previous line as written: a is the previous line's result (the first
    operand on the first line), op and b are the question's next operator and operand, and
    c = a op b. So after a wrong line, a later line that carries the wrong value on correctly is
    a correct step: the checker judges steps, not answers. The boxed line (`\\boxed{x}`, with
    or without "so ") is correct when every step came before it and x is the last result.
    Anything else is wrong: an extra step, a line after the box, an unreadable line. The last
    line of a response that stops inside a line (no newline after it and unreadable) is not
    checkable (0): it was cut off, and the verifier's verdict on the rollout is all there is.
    A question that is not this project's arithmetic gives no steps at all.
    """
    try:
        operands, ops = parse_expression(question)
    except DataError:
        return []
    steps, prev, j, boxed, pos = [], operands[0], 0, False, 0
    lines = response.split("\n")
    for n, line in enumerate(lines):
        start, end = pos, pos + len(line) + (1 if n < len(lines) - 1 else 0)
        pos = end
        if not line:
            continue
        m, box = STEP_LINE.fullmatch(line), BOXED_LINE.fullmatch(line)
        verdict, slip, needs, first_wrong = -1, None, None, None
        if m and not boxed:
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[5])
            needs = "carry" if has_carry(a, op, b) else "borrow" if has_borrow(a, op, b) else None
            if needs == "carry" and c == a + b - 10:
                slip = "carry"
            elif needs == "borrow" and c == a - b + 10:
                slip = "borrow"
            expected = j < len(ops) and a == prev and op == ops[j] and b == operands[j + 1]
            verdict = 1 if expected and c == _apply(a, op, b) else -1
            if verdict == -1 and j < len(ops):
                should = f"{prev}{ops[j]}{operands[j + 1]}{m[4]}{_apply(prev, ops[j], operands[j + 1])}"
                first_wrong = start + _first_difference(line, should)
            prev, j = c, j + 1
        elif box and not boxed:
            boxed = True
            verdict = 1 if j == len(ops) and int(box[1]) == prev else -1
            if verdict == -1 and j == len(ops):
                first_wrong = start + _first_difference(line, line[:box.start(1)] + str(prev))
        elif n == len(lines) - 1 and not boxed:
            verdict = 0                                      # cut off inside its last line
        if verdict == -1 and first_wrong is None:
            first_wrong = start                              # a line that should not be there
        steps.append(Step(start, end, verdict, slip, needs, first_wrong))
    return steps


def _first_difference(written: str, should: str) -> int:
    """The index of the first character where `written` departs from `should` (a line without
    its newline); a line that stops short or runs on departs where the two lengths part."""
    return next((i for i, (x, y) in enumerate(zip(written, should)) if x != y), min(len(written), len(should)))


def slip_counts(steps: list[Step]) -> dict[str, int]:
    """How often steps forget a carry or a borrow where their own operation needs one:
    {"carry_steps", "carry_slips", "borrow_steps", "borrow_slips"} (from `check_steps`)."""
    out = {"carry_steps": 0, "carry_slips": 0, "borrow_steps": 0, "borrow_slips": 0}
    for s in steps:
        if s.needs is not None:
            out[f"{s.needs}_steps"] += 1
            out[f"{s.needs}_slips"] += int(s.slip == s.needs)
    return out


def arithmetic_problems(n: int, seed: int, task: ArithmeticTask = ArithmeticTask(),
                        exclude: set[str] | frozenset = frozenset(), unique: bool = True,
                        style: str = "chain") -> list[Problem]:
    """`n` seeded problems (distinct questions when `unique`), none of whose question is in
    `exclude` (pass the held-out questions when sampling training data)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Problem] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise DataError(f"could not draw {n} distinct problems from {task}; widen the task")
        operands, ops = sample_expression(rng, task)
        question = expression_text(operands, ops)
        if question in exclude or (unique and question in seen):
            continue
        seen.add(question)
        solution, value = solve(operands, ops, style)
        out.append(Problem(id=f"arith-{seed}-{len(out)}", question=question, answer=str(value),
                           solution=solution, source="arithmetic"))
    return out


# --------------------------------------------------------------------------------------------
# Local JSONL (MATH-500 / GSM8K layout, and this project's own splits)
# --------------------------------------------------------------------------------------------

def _gold_from_row(row: dict, where: str) -> str:
    """The gold answer of a row: its `answer` field; for GSM8K hub rows whose `answer` is a
    worked solution, the number after `####`."""
    answer = row.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if isinstance(answer, str) and "####" in answer:
        answer = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not isinstance(answer, str) or not answer.strip():
        raise DataError(f"{where}: no usable gold answer (field 'answer' is {answer!r}); every "
                        "problem needs a non-empty answer string")
    return answer.strip()


def rows_to_problems(rows, source: str) -> list[Problem]:
    """Dict rows with `problem` or `question`, `answer`, optional `solution` and `id`."""
    out = []
    for i, row in enumerate(rows):
        where = f"{source} row {i}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with 'question'/'problem' and 'answer', got {type(row).__name__}")
        question = row.get("problem", row.get("question"))
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{where}: no question (expected a non-empty 'problem' or 'question' field)")
        answer = _gold_from_row(row, where)
        solution = row.get("solution")
        out.append(Problem(id=str(row.get("id", row.get("unique_id", f"{Path(source).stem}-{i}"))),
                           question=question, answer=answer,
                           solution=solution if isinstance(solution, str) else None, source=source))
    return out


def load_jsonl(path, limit: int | None = None) -> list[Problem]:
    """Problems from a JSONL file in the MATH-500 or GSM8K layout (or this project's splits)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {line_no}: not valid JSON ({err.msg})") from None
            if limit is not None and len(rows) >= limit:
                break
    return rows_to_problems(rows, str(path))


def save_jsonl(problems: list[Problem], path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for p in problems:
            f.write(json.dumps({k: v for k, v in asdict(p).items() if v is not None}) + "\n")


# --------------------------------------------------------------------------------------------
# reasoning-gym (offline) and the hub (online)
# --------------------------------------------------------------------------------------------

def reasoning_gym_problems(name: str, n: int, seed: int = 0, **kwargs) -> list[Problem]:
    """`n` problems from a reasoning-gym generator (`gsm_symbolic`, `basic_arithmetic`,
    `chain_sum`, ...). Extra keyword arguments go to the generator's config."""
    try:
        import reasoning_gym
    except ImportError as err:  # pragma: no cover - dev extra
        raise DataError("reasoning-gym is not installed: pip install reasoning-gym") from err
    dataset = reasoning_gym.create_dataset(name, size=n, seed=seed, **kwargs)
    rows = [{"id": f"{name}-{seed}-{i}", "question": item["question"], "answer": item["answer"]}
            for i, item in enumerate(dataset)]
    return rows_to_problems(rows, f"reasoning_gym:{name}")


# Hub datasets for online users: name -> (dataset id, config, split). Checked against the
# datasets' public cards; the offline path is `load_jsonl` on a local copy.
HUB_DATASETS = {
    "math500": ("HuggingFaceH4/MATH-500", None, "test"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "aime24": ("HuggingFaceH4/aime_2024", None, "train"),
    "aime25": ("yentinglin/aime_2025", None, "train"),
    "amc23": ("math-ai/amc23", None, "test"),
}


def hub_problems(name: str, limit: int | None = None) -> list[Problem]:
    """A benchmark from the Hugging Face hub (needs the network; see HUB_DATASETS)."""
    if name not in HUB_DATASETS:
        raise DataError(f"unknown hub dataset {name!r}; known: {sorted(HUB_DATASETS)}")
    import datasets
    repo, config, split = HUB_DATASETS[name]
    ds = datasets.load_dataset(repo, config, split=split)
    rows = list(ds) if limit is None else [ds[i] for i in range(min(limit, len(ds)))]
    return rows_to_problems(rows, f"hub:{repo}")


# --------------------------------------------------------------------------------------------
# The committed tiny-world splits
# --------------------------------------------------------------------------------------------

SPLIT_SEEDS = {"eval": 1234, "train": 5678, "eval_skills": 4321, "eval_unseen": 2468}
SPLIT_SIZES = {"eval": 256, "train": 2048, "eval_skills": 256, "eval_unseen": 256}


def skill_balanced_problems(per_skill: int, seed: int, exclude: set[str] | frozenset = frozenset(),
                            task: ArithmeticTask = ArithmeticTask()) -> list[Problem]:
    """`per_skill` distinct problems of each skill label (SKILLS order, then interleaved), none
    of whose question is in `exclude`. The natural mix has few borrow (11%) and both (4%)
    problems; this split weighs every skill alike, so a per-skill change is measured on as many
    problems as the others."""
    rng = random.Random(seed)
    buckets: dict[str, list[Problem]] = {s: [] for s in SKILLS}
    seen = set(exclude)
    attempts = 0
    while any(len(b) < per_skill for b in buckets.values()):
        attempts += 1
        if attempts > 1000 * per_skill * len(SKILLS):
            raise DataError(f"could not draw {per_skill} problems of every skill from {task}")
        operands, ops = sample_expression(rng, task)
        question = expression_text(operands, ops)
        skill = skill_of(question)
        if question in seen or len(buckets[skill]) >= per_skill:
            continue
        seen.add(question)
        solution, value = solve(operands, ops)
        buckets[skill].append(Problem(id=f"arith-skills-{seed}-{skill}-{len(buckets[skill])}", question=question,
                                      answer=str(value), solution=solution, source="arithmetic"))
    return [buckets[s][i] for i in range(per_skill) for s in SKILLS]


def regenerate_splits(out_dir=DATA_DIR) -> dict[str, Path]:
    """Rebuild `sgopd_lite/assets/arith_{eval,train,eval_skills}.jsonl` (`python -m sgopd_lite data`).

    The held-out split is drawn first; the training prompts exclude its questions; the
    skill-balanced split (64 problems of each skill, for the study) excludes both. `eval_unseen`
    depends on the committed models, so the command writes it after these
    (`worlds.tiny.write_unseen_split`).
    """
    out_dir = Path(out_dir)
    held_out = arithmetic_problems(SPLIT_SIZES["eval"], SPLIT_SEEDS["eval"])
    train = arithmetic_problems(SPLIT_SIZES["train"], SPLIT_SEEDS["train"],
                                exclude={p.question for p in held_out})
    balanced = skill_balanced_problems(SPLIT_SIZES["eval_skills"] // len(SKILLS), SPLIT_SEEDS["eval_skills"],
                                       exclude={p.question for p in held_out + train})
    paths = {"eval": out_dir / "arith_eval.jsonl", "train": out_dir / "arith_train.jsonl",
             "eval_skills": out_dir / "arith_eval_skills.jsonl"}
    save_jsonl(held_out, paths["eval"])
    save_jsonl(train, paths["train"])
    save_jsonl(balanced, paths["eval_skills"])
    return paths


def arithmetic_split(name: str) -> list[Problem]:
    """A committed split: `train` (2048 RL training prompts), or one of three evaluation splits,
    each disjoint from the training prompts:

    eval         256 problems, the natural skill mix
    eval_skills  64 problems of each skill (carry, borrow, both, none)
    eval_unseen  up to 64 problems of each skill that no committed tiny model saw in its SFT data
                 (written by `worlds.tiny.write_unseen_split`; all have three operands)

    The committed tiny models were built when SFT skipped only `eval`: most of `eval_skills` was
    in their SFT data (`worlds.tiny.sft_seen` says which). Models built since skip all three."""
    if name not in SPLIT_SIZES:
        raise DataError(f"unknown split {name!r}; expected one of {sorted(SPLIT_SIZES)}")
    return load_jsonl(DATA_DIR / f"arith_{name}.jsonl")
