"""Pictures of a run: per-token gate decisions, gate-class fractions, learning curves, the PTS
schedule. Every function returns a matplotlib Figure (or an HTML string); notebooks only show
them. Input records are the ones the trainer writes (`rollouts.jsonl`, `metrics.jsonl`).

May import: gate, losses, scheduler (the ground floor), numpy, matplotlib; never train or worlds.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from .gate import TokenClass

CLASS_COLORS = {
    int(TokenClass.NEUTRAL): "#d9d9d9",      # grey: no evidence
    int(TokenClass.CONSENSUS): "#4daf4a",    # green: teacher agrees with the verifier
    int(TokenClass.CONFLICT_I): "#e41a1c",   # red: correct rollout, teacher pushes the token down
    int(TokenClass.CONFLICT_II): "#ff7f00",  # orange: wrong rollout, teacher pushes the token up
}
CLASS_NAMES = {int(c): c.name.lower() for c in TokenClass}


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _plt():
    import matplotlib
    if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline",):
        try:
            matplotlib.use("Agg", force=False)
        except Exception:  # pragma: no cover - a backend is already active
            pass
    import matplotlib.pyplot as plt
    return plt


def _visible(tok: str) -> str:
    return {"\n": "\u21b5", " ": "\u2423"}.get(tok, tok)


def _token_colors(record: dict, color_by: str):
    import matplotlib.colors as mcolors
    from matplotlib import colormaps

    if color_by == "class":
        return [CLASS_COLORS[c] for c in record["token_class"]], None
    key = {"advantage": "advantage", "a2": "a2", "kl": "a2"}[color_by]
    values = np.asarray(record[key], dtype=float)
    if color_by == "kl":
        values = -values                      # k1 estimate of KL(pi_old || pi_T) per token
    limit = max(float(np.abs(values).max()) if values.size else 1.0, 1e-6)
    norm = mcolors.TwoSlopeNorm(vmin=-limit, vcenter=0.0, vmax=limit)
    cmap = colormaps["RdBu"]                  # diverging: red pushes down, blue pushes up
    return [cmap(norm(v)) for v in values], (cmap, norm)


def plot_token_gate(record: dict, color_by: str = "class", width: int = 40, title: str | None = None):
    """One rollout as a grid of tokens coloured by gate class, advantage, a2 or per-token KL.

    record: a line of `rollouts.jsonl` (tokens, a1, a2, token_class, lambda_t, advantage, reward).
    """
    plt = _plt()
    tokens = record["tokens"]
    colors, scale = _token_colors(record, color_by)
    rows, row, col = [], [], 0
    for i, tok in enumerate(tokens):
        row.append(i)
        col += 1
        if tok == "\n" or col >= width:
            rows.append(row)
            row, col = [], 0
    if row:
        rows.append(row)
    n_rows = max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(min(0.32 * width, 14), 0.45 * n_rows + 1.0))
    for r, items in enumerate(rows):
        for c, i in enumerate(items):
            ax.add_patch(plt.Rectangle((c, -r - 1), 0.95, 0.9, color=colors[i]))
            ax.text(c + 0.47, -r - 0.55, _visible(tokens[i]), ha="center", va="center",
                    fontsize=9, family="monospace")
    ax.set_xlim(0, max(len(r) for r in rows) if rows else 1)
    ax.set_ylim(-n_rows - 0.1, 0.1)
    ax.axis("off")
    head = title or (f"reward {record.get('reward', float('nan')):.0f}, a1 {record.get('a1', 0.0):+.2f}"
                     f" - coloured by {color_by}")
    ax.set_title(head, fontsize=10, loc="left")
    if color_by == "class":
        handles = [plt.Rectangle((0, 0), 1, 1, color=CLASS_COLORS[k]) for k in sorted(CLASS_COLORS)]
        ax.legend(handles, [CLASS_NAMES[k] for k in sorted(CLASS_COLORS)], loc="upper right",
                  fontsize=8, ncol=4, bbox_to_anchor=(1.0, 0.0), frameon=False)
    else:
        cmap, norm = scale
        sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, orientation="horizontal", fraction=0.08, pad=0.02, label=color_by)
    fig.tight_layout()
    return fig


def token_gate_html(record: dict, color_by: str = "class") -> str:
    """The same picture as HTML spans; each token's tooltip shows a1, a2, class, lambda_t and A."""
    import matplotlib.colors as mcolors

    colors, _ = _token_colors(record, color_by)
    spans = []
    for i, tok in enumerate(record["tokens"]):
        tip = (f"a1={record['a1']:+.3f} a2={record['a2'][i]:+.3f} "
               f"class={CLASS_NAMES[record['token_class'][i]]} "
               f"lambda_t={record['lambda_t'][i]:.2f} A={record['advantage'][i]:+.3f}")
        text = html.escape(_visible(tok)) + ("<br>" if tok == "\n" else "")
        spans.append(f'<span title="{tip}" style="background:{mcolors.to_hex(colors[i])};'
                     f'font-family:monospace;padding:1px">{text}</span>')
    head = f"<div><b>reward {record.get('reward', 0):.0f}</b>, a1 {record.get('a1', 0):+.2f}</div>"
    return head + "<div style='line-height:1.8'>" + "".join(spans) + "</div>"


def plot_gate_change(records: list[dict], gate_name: str = "the gate", roles: bool = False):
    """Rollouts token by token, two rows each: OPD's push (a2) and the gate's advantage A, each
    cell coloured by its value (red pushes the token down, blue up) and labelled with it; a thick
    frame marks positions where the teacher's most likely token is wrong. roles=True draws, under
    OPD's row, one row per place a verifier can act (the records' `roles`) instead of the gate's.

    records: `demo.gate_change_example`'s (tokens, a2, gate, teacher_wrong, reward, question[, roles]).
    """
    import matplotlib.colors as mcolors
    from matplotlib import colormaps

    plt = _plt()

    def rows_of(rec):
        extra = list(rec["roles"].items()) if roles else [(gate_name, rec["gate"])]
        return [("OPD: a2", rec["a2"])] + [(f"{label}: A", values) for label, values in extra]

    limit = max(max(abs(v) for rec in records for _, vals in rows_of(rec) for v in vals), 1e-6)
    norm, cmap = mcolors.TwoSlopeNorm(vmin=-limit, vcenter=0.0, vmax=limit), colormaps["RdBu"]
    width = max(len(rec["tokens"]) for rec in records)
    n_rows = len(rows_of(records[0]))
    fig, axes = plt.subplots(len(records), 1, figsize=(min(0.62 * width + 2, 18), 0.95 * n_rows * len(records)),
                             squeeze=False)
    for ax, rec in zip(axes[:, 0], records):
        for row, (label, values) in enumerate(rows_of(rec)):
            ax.text(-0.3, -row - 0.5, label, ha="right", va="center", fontsize=9)
            for t, (tok, v) in enumerate(zip(rec["tokens"], values)):
                frame = rec["teacher_wrong"][t]
                ax.add_patch(plt.Rectangle((t, -row - 0.95), 0.95, 0.9, facecolor=cmap(norm(v)),
                                           edgecolor="black" if frame else "none", linewidth=2.5 if frame else 0))
                ink = "white" if abs(v) > 0.6 * limit else "black"
                ax.text(t + 0.47, -row - 0.35, _visible(tok), ha="center", va="center", fontsize=10,
                        family="monospace", color=ink)
                ax.text(t + 0.47, -row - 0.75, f"{v + 0.0:+.1f}", ha="center", va="center", fontsize=6, color=ink)
        ax.set_xlim(-3.2 if not roles else -6.5, width)
        ax.set_ylim(-n_rows - 0.1, 0.1)
        ax.axis("off")
        verdict = "correct" if rec["reward"] == 1 else "wrong"
        ax.set_title(f"{rec['question']}  ({verdict} rollout; framed: the teacher's top token is wrong)",
                     fontsize=9, loc="left")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[:, 0].tolist(), orientation="horizontal",
                 fraction=0.06, pad=0.04, label="advantage (red: pushed down, blue: pushed up)")
    return fig


def plot_gate_fractions(metrics: list[dict], title: str = "gate classes over training"):
    """Stacked fractions of consensus / conflict I / conflict II / neutral tokens per step."""
    plt = _plt()
    rows = [m for m in metrics if "frac_consensus" in m]
    steps = [m["step"] for m in rows]
    keys = [("frac_consensus", TokenClass.CONSENSUS), ("frac_conflict_i", TokenClass.CONFLICT_I),
            ("frac_conflict_ii", TokenClass.CONFLICT_II), ("frac_neutral", TokenClass.NEUTRAL)]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if rows:
        ax.stackplot(steps, *[[m[k] for m in rows] for k, _ in keys],
                     colors=[CLASS_COLORS[int(c)] for _, c in keys],
                     labels=[CLASS_NAMES[int(c)] for _, c in keys])
    ax.set_xlabel("step")
    ax.set_ylabel("fraction of response tokens")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def _smooth(values, window: int):
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_learning_curves(runs: dict, metric: str = "reward_mean", smooth: int = 10, ax=None,
                         title: str | None = None):
    """One curve per run (name -> list of metric dicts, or a list of such lists for seeds:
    then the mean with a min-max band)."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, run in runs.items():
        seeds = run if run and isinstance(run[0], list) else [run]
        curves = []
        for seed_run in seeds:
            pts = [(m["step"], m[metric]) for m in seed_run if metric in m and m[metric] is not None]
            if pts:
                curves.append(pts)
        if not curves:
            continue
        steps = np.array([s for s, _ in curves[0]])
        length = min(len(c) for c in curves)
        values = np.array([[v for _, v in c[:length]] for c in curves])
        w = smooth if metric == "reward_mean" else 1
        mean = _smooth(values.mean(0), w)
        x = steps[:length][len(steps[:length]) - len(mean):]
        line, = ax.plot(x, mean, label=name)
        if len(curves) > 1:
            lo = _smooth(values.min(0), w)
            hi = _smooth(values.max(0), w)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.legend(fontsize=8)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def plot_learning_curve_panels(panels: dict, metric: str, smooth: int = 10, title: str | None = None):
    """One figure, one panel per entry of `panels` (panel title -> the `runs` of
    `plot_learning_curves`: name -> metric dicts, or per-seed lists of them), sharing the y axis."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), sharey=True, squeeze=False)
    for ax, (name, runs) in zip(axes[0], panels.items()):
        plot_learning_curves(runs, metric, smooth=smooth, ax=ax, title=name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


GATE_FRACTION_KEYS = ("frac_consensus", "frac_conflict_i", "frac_conflict_ii", "frac_neutral")


def plot_gate_fraction_panels(panels: dict, title: str | None = None):
    """One figure, one panel per entry of `panels` (panel title -> list of per-seed curve dicts
    {"frac_consensus": [[step, value], ...], ...}): the mean fraction of each gate class per step."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, (name, seeds) in zip(axes, panels.items()):
        for key in GATE_FRACTION_KEYS:
            curves = [np.array(c.get(key, []), dtype=float) for c in seeds]
            curves = [c for c in curves if len(c)]
            if curves:
                n = min(len(c) for c in curves)
                ax.plot(curves[0][:n, 0], np.mean([c[:n, 1] for c in curves], 0), label=key[5:])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
    axes[0].set_ylabel("fraction of response tokens")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_pts_schedule(cfg, steps: int, ax=None):
    """w(k) of phased teacher sampling over `steps` optimizer steps."""
    from .scheduler import pts_weight

    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 2.6))
    k = np.arange(steps)
    ax.plot(k, pts_weight(k, cfg))
    ax.axvline(cfg.k1, ls=":", c="grey")
    ax.axvline(cfg.k2, ls=":", c="grey")
    ax.set_xlabel("optimizer step k")
    ax.set_ylabel("w(k)")
    ax.set_title(f"phased teacher sampling: w0={cfg.w0}, K1={cfg.k1}, K2={cfg.k2}")
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


# ============================================================================================
# Notebook helpers: re-gating saved inputs, several rollouts in one picture, the live explorer,
# small summary plots. Added for notebooks/; the math is always the library's (`gate.sign_gate`,
# `losses`), these functions only package inputs and draw.
# ============================================================================================

from dataclasses import dataclass as _dataclass  # noqa: E402  (kept local to this section)


@_dataclass
class GateInputs:
    """Everything `gate.sign_gate` needs for a batch of rollouts, plus the tokens as text, so
    that the gate can be re-run with other settings without running any model again.

    R rollouts of up to T response tokens:
        teacher_logp (R, T), old_logp (R, T), rewards (R,), group_ids (R,), mask (R, T),
        tokens: R lists of token strings (the masked positions only).
        saved_a1: (R,) or None. Set when the inputs were rebuilt from `rollouts.jsonl` records,
        which keep a1 but not the rest of each group's rewards (see `from_records`).
    """

    teacher_logp: "object"
    old_logp: "object"
    rewards: "object"
    group_ids: "object"
    mask: "object"
    tokens: list
    saved_a1: "object" = None

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_rollouts(cls, tokenizer, rollouts, teacher_logp, old_logp, rewards) -> "GateInputs":
        """Package a `rollout.Rollouts` batch with its log-probs (R, T) and rewards (R,)."""
        import torch

        mask = rollouts.response_mask.detach().cpu()
        tokens = []
        for i in range(len(rollouts)):
            n = int(mask[i].sum())
            tokens.append([tokenizer.decode([t]) for t in rollouts.response_ids[i, :n].tolist()])
        return cls(teacher_logp=teacher_logp.detach().float().cpu(), old_logp=old_logp.detach().float().cpu(),
                   rewards=torch.as_tensor(rewards, dtype=torch.float32).cpu(),
                   group_ids=rollouts.group_ids.detach().cpu(), mask=mask, tokens=tokens)

    @classmethod
    def from_records(cls, records: list[dict]) -> "GateInputs":
        """Rebuild inputs from `rollouts.jsonl` records (tokens, a2, a1, reward).

        The records hold a2 = log pi_T - log pi_old, not the two log-probs; the gate only reads
        their difference (and the k3 metric, which is then not meaningful), so teacher_logp = a2
        and old_logp = 0. They also hold only a few rollouts per group, so a1 in "group" mode is
        the saved one, from the full group at training time (see `gate_records`).
        """
        import torch

        T = max((len(r["tokens"]) for r in records), default=0)
        a2 = torch.zeros(len(records), T)
        mask = torch.zeros(len(records), T, dtype=torch.long)
        for i, r in enumerate(records):
            n = len(r["tokens"])
            a2[i, :n] = torch.tensor(r["a2"], dtype=torch.float32)
            mask[i, :n] = 1
        return cls(teacher_logp=a2, old_logp=torch.zeros_like(a2),
                   rewards=torch.tensor([float(r["reward"]) for r in records]),
                   group_ids=torch.arange(len(records)), mask=mask,
                   tokens=[list(r["tokens"]) for r in records],
                   saved_a1=torch.tensor([float(r["a1"]) for r in records]))

    def select(self, idx) -> "GateInputs":
        """The rollouts at `idx` (a list of indices). With a1_mode="group", keep whole groups."""
        import torch

        idx = torch.as_tensor(list(idx), dtype=torch.long)
        return GateInputs(self.teacher_logp[idx], self.old_logp[idx], self.rewards[idx],
                          self.group_ids[idx], self.mask[idx], [self.tokens[i] for i in idx.tolist()],
                          None if self.saved_a1 is None else self.saved_a1[idx])


def gate_records(inputs: GateInputs, cfg=None) -> tuple[list[dict], dict]:
    """Run `gate.sign_gate(cfg)` on saved inputs; returns (records, metrics).

    records: one dict per rollout in the format of `rollouts.jsonl` (tokens, reward, group, a1,
    a2, token_class, lambda_t, advantage), ready for `plot_token_gate` / `plot_gate_records`.
    For inputs rebuilt from records (`saved_a1` set), a1 is reproduced exactly through the
    gate's own "sign" mode: a1 = 2 r' - 1 with r' = (saved_a1 + 1) / 2 in "group" mode, and
    r' = r in "sign" mode (a1 = 2r - 1, what "sign" means).
    """
    from .gate import GateConfig, sign_gate

    cfg = cfg or GateConfig()
    rewards, gate_cfg = inputs.rewards, cfg
    if inputs.saved_a1 is not None:
        if cfg.a1_mode == "group":
            rewards = (inputs.saved_a1 + 1.0) / 2.0
        gate_cfg = cfg.replace(a1_mode="sign")
    out = sign_gate(inputs.teacher_logp, inputs.old_logp, rewards, inputs.group_ids, inputs.mask,
                    cfg=gate_cfg)
    records = []
    for i, toks in enumerate(inputs.tokens):
        n = len(toks)
        records.append({"tokens": toks, "reward": float(inputs.rewards[i]), "group": int(inputs.group_ids[i]),
                        "a1": float(out.a1[i]), "a2": out.a2[i, :n].tolist(),
                        "token_class": out.token_class[i, :n].tolist(),
                        "lambda_t": out.lambda_t[i, :n].tolist(),
                        "advantage": out.advantage[i, :n].tolist()})
    return records, out.metrics


def one_step_change(inputs: GateInputs, cfg=None, lr: float = 1.0):
    """The change of log pi of every sampled token after ONE SGD step of the sampled loss
    (`losses.policy_gradient_loss`) with the advantage of `gate.sign_gate(cfg)`: (R, T), 0
    outside the mask.

    The policy is the simplest one that shares what rollouts share: one free softmax per
    prefix (a table of logits, no generalisation between contexts), started at the saved
    log-probs (the log pi_old of every sampled token; the rest of each context's mass on one
    "other" entry). Rollouts that share a prefix share that softmax, so a token written after
    the same prefix in several rollouts (the carry of `7+5=12` and of `7+5=13`) is pushed by all
    of them, and pushing one token of a context moves the others of that context. A real model
    also shares parameters across contexts; this one isolates what the gate itself decides.
    Inputs rebuilt from records (old_logp = 0) start from uniform contexts instead.
    """
    import math

    import torch

    from .gate import GateConfig
    from .losses import policy_gradient_loss, token_logprobs

    cfg = cfg or GateConfig()
    recs, _ = gate_records(inputs, cfg)
    R, T = inputs.mask.shape
    contexts, vocab = {}, {"<other>": 0}
    ctx = torch.zeros(R, T, dtype=torch.long)                                   # (R, T) context id
    ids = torch.zeros(R, T, dtype=torch.long)                                   # (R, T) token id
    for i, toks in enumerate(inputs.tokens):
        for t, tok in enumerate(toks):
            ctx[i, t] = contexts.setdefault(tuple(toks[:t]), len(contexts))
            ids[i, t] = vocab.setdefault(tok, len(vocab))
    m = inputs.mask.bool()
    table = torch.full((max(len(contexts), 1), len(vocab)), -30.0)              # (C, V) logits
    if inputs.saved_a1 is None:      # start every context at the saved log pi_old of its tokens
        old = inputs.old_logp.float()                                            # (R, T)
        for c in range(len(contexts)):
            here = m & (ctx == c)
            seen = {}
            for v, lp in zip(ids[here].tolist(), old[here].tolist()):
                seen.setdefault(v, []).append(lp)
            logp = {v: sum(x) / len(x) for v, x in seen.items()}
            rest = max(1.0 - sum(math.exp(lp) for lp in logp.values()), 1e-6)
            table[c, 0] = math.log(rest)
            for v, lp in logp.items():
                table[c, v] = lp
    else:
        table.zero_()
    table.requires_grad_(True)
    advantage = torch.zeros(R, T)
    for i, rec in enumerate(recs):
        advantage[i, :len(rec["advantage"])] = torch.tensor(rec["advantage"])
    n = max(int(m.sum()), 1)
    before = token_logprobs(table[ctx], ids)                                     # (R, T)
    loss = policy_gradient_loss(before, advantage, m, num_tokens=n)
    (grad,) = torch.autograd.grad(loss, table)
    with torch.no_grad():
        after = token_logprobs((table - lr * grad)[ctx], ids)                    # (R, T)
        return torch.where(m, after - before, torch.zeros(()))


def plot_gate_records(records: list[dict], color_by: str = "class", max_tokens: int = 48,
                      title: str | None = None, limit: float | None = None, ax=None):
    """Several rollouts, one row each (first `max_tokens` tokens), coloured by gate class,
    advantage, a2 or per-token KL; the row label gives group, reward and a1.

    records: `rollouts.jsonl`-style dicts (see `gate_records`). With a colour scale, all rows
    share one symmetric scale (`limit`, default the largest |value| shown) so rows compare.
    color_by "change" reads each record's "change" list (`one_step_change`, as the explorer adds it).
    """
    import matplotlib.colors as mcolors
    from matplotlib import colormaps

    plt = _plt()
    n = len(records)
    width = min(max((len(r["tokens"]) for r in records), default=1), max_tokens)
    label_cells = 9   # room left of the tokens for the "g0 r=1 a1=+0.67" labels, in cell units
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.26 * (max(width, 16) + label_cells) + 0.4, 0.42 * n + 1.4))
    scale = None
    if color_by != "class":
        key = {"a2": "a2", "kl": "a2", "change": "change"}.get(color_by, "advantage")
        sign = -1.0 if color_by == "kl" else 1.0
        vals = [sign * v for r in records for v in r[key][:max_tokens]]
        lim = limit or max(max((abs(v) for v in vals), default=1.0), 1e-6)
        norm = mcolors.TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
        cmap = colormaps["RdBu"]
        scale = (cmap, norm, key, sign)
    for row, rec in enumerate(records):
        y = -row - 1
        for c, tok in enumerate(rec["tokens"][:max_tokens]):
            if scale is None:
                color = CLASS_COLORS[rec["token_class"][c]]
            else:
                cmap, norm, key, sign = scale
                color = cmap(norm(sign * rec[key][c]))
            ax.add_patch(plt.Rectangle((c, y), 0.95, 0.9, color=color))
            label = _visible(tok)
            ax.text(c + 0.47, y + 0.45, label, ha="center", va="center", fontsize=8 if len(label) <= 2 else 4,
                    family="monospace")
        more = " ..." if len(rec["tokens"]) > max_tokens else ""
        ax.text(-0.3, y + 0.45, f"g{rec.get('group', 0)} r={rec.get('reward', 0):.0f} "
                f"a1={rec.get('a1', 0):+.2f}{more}", ha="right", va="center", fontsize=8)
    ax.set_xlim(-label_cells, max(width, 16))
    ax.set_ylim(-n - 0.2, 0.1)
    ax.axis("off")
    ax.set_title(title or f"{n} rollouts coloured by {color_by}", fontsize=9, loc="left")
    if scale is None:
        handles = [plt.Rectangle((0, 0), 1, 1, color=CLASS_COLORS[k]) for k in sorted(CLASS_COLORS)]
        ax.legend(handles, [CLASS_NAMES[k] for k in sorted(CLASS_COLORS)], loc="upper center",
                  fontsize=8, ncol=4, bbox_to_anchor=(0.5, 0.0), frameon=False)
    else:
        cmap, norm, _, _ = scale
        sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        ax.figure.colorbar(sm, ax=ax, orientation="horizontal", fraction=0.06, pad=0.02,
                           label=f"{color_by} (blue: pushed up, red: pushed down)")
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def plot_gate_settings(inputs: GateInputs, settings: dict, color_by: str = "advantage",
                       max_tokens: int = 40):
    """The same rollouts under several gate settings ({name: GateConfig}), one panel each,
    on one shared colour scale: how plain OPD, ExOPD, SG-OPD and conflict masking differ."""
    plt = _plt()
    results = {name: gate_records(inputs, cfg) for name, cfg in settings.items()}
    key = "a2" if color_by in ("a2", "kl") else "advantage"
    lim = max(max((abs(v) for r in recs for v in r[key][:max_tokens]), default=1.0)
              for recs, _ in results.values())
    n = len(inputs)
    width = min(max((len(t) for t in inputs.tokens), default=1), max_tokens)
    fig, axes = plt.subplots(len(settings), 1, figsize=(0.26 * (max(width, 16) + 9) + 0.4,
                                                        (0.42 * n + 1.4) * len(settings)), squeeze=False)
    for ax, (name, (recs, metrics)) in zip(axes[:, 0], results.items()):
        plot_gate_records(recs, color_by, max_tokens, limit=max(lim, 1e-6), ax=ax,
                          title=f"{name}: mean |A| {metrics['adv_abs_mean']:.3f}, "
                                f"mean lambda_t {metrics['lambda_mean']:.2f}")
    fig.tight_layout()
    return fig


def gate_explorer(records_or_inputs, indices=None, cfg=None, color_by: str = "class",
                  max_tokens: int = 40, interactive: bool | None = None, watch=None, lr: float = 1.0):
    """Sliders for lambda_e, lambda_i, tau and a1 mode that re-colour saved rollouts live.

    records_or_inputs: a `GateInputs`, or `rollouts.jsonl` records (converted with
    `GateInputs.from_records`). indices: which rollouts to show (default all; keep whole groups
    for a1_mode="group"). cfg: the starting `GateConfig`. color_by: "class", "advantage", "a2"
    or "change" (the change of log pi after one SGD step, `one_step_change` with `lr`).
    watch: (rollout, position) of one token, counted in the shown rollouts: the explorer then
    reports that token's one-step change of log pi under the chosen settings next to plain OPD's.

    Every change re-runs `gate.sign_gate` on the saved inputs (milliseconds; no model runs) and
    redraws when a slider is released (continuous_update=False), not on every tick.
    The picture is an `ipywidgets.Image` inside the controls, so that every widget frontend
    (Jupyter, JupyterLab, Voila, Colab) redraws it: a display output updated by display id,
    what this function used before, is redrawn by notebook frontends but never by Voila, which
    renders cell outputs once and keeps only widgets live. The controls are displayed with a
    static PNG of the starting setting as a fallback, so a headless run (nbclient, CI, GitHub's
    renderer, nbconvert) stores that picture. Without ipywidgets, or with interactive=False,
    only the static figure is shown. Returns the controls widget, or None when static.
    (Displays by itself: call it as the last statement of a cell followed by `;`, or assign the
    result.)
    """
    import base64
    import io

    from IPython.display import display

    from .gate import A1_MODES, GateConfig

    plt = _plt()
    inputs = records_or_inputs if isinstance(records_or_inputs, GateInputs) else \
        GateInputs.from_records(list(records_or_inputs))
    if indices is not None:
        inputs = inputs.select(indices)
    cfg = cfg or GateConfig()
    opd_change = one_step_change(inputs, GateConfig.opd(), lr) if watch is not None else None

    def readout(c) -> str:
        if watch is None:
            return ""
        i, t = watch
        mine, opd = float(one_step_change(inputs, c, lr)[i, t]), float(opd_change[i, t])
        ratio = f" ({mine / opd:.2f}x plain OPD's)" if abs(opd) > 1e-12 else ""
        return (f"one SGD step (lr {lr:g}, one softmax per prefix): log pi of rollout {i}'s "
                f"token {inputs.tokens[i][t]!r} at position {t} changes by <b>{mine:+.4f}</b>{ratio}; "
                f"plain OPD: {opd:+.4f}")

    def png(c, colour) -> bytes:
        recs, metrics = gate_records(inputs, c)
        if colour == "change":
            change = one_step_change(inputs, c, lr)
            for k, rec in enumerate(recs):
                rec["change"] = change[k, :len(rec["tokens"])].tolist()
        title = (f"lambda_e={c.lambda_e:.2f} lambda_i={c.lambda_i:.2f} tau={c.tau:.2f} a1={c.a1_mode}: "
                 f"consensus {metrics['frac_consensus']:.0%}, conflict I {metrics['frac_conflict_i']:.0%}, "
                 f"II {metrics['frac_conflict_ii']:.0%}, neutral {metrics['frac_neutral']:.0%}, "
                 f"mean |A| {metrics['adv_abs_mean']:.3f}")
        fig = plot_gate_records(recs, colour, max_tokens, title=title)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)   # shown as PNG bytes only, never a second time by the inline backend
        return buf.getvalue()

    start = png(cfg, color_by)
    static = {"image/png": base64.b64encode(start).decode("ascii"), "text/plain": "<gate explorer>"}
    try:
        import ipywidgets as W
    except ImportError:
        W = None
    if interactive is False or W is None:
        display(static, raw=True)
        if watch is not None:
            print(readout(cfg).replace("<b>", "").replace("</b>", ""))
        if W is None:
            print("ipywidgets is not installed: static figure only (pip install ipywidgets)")
        return None

    style = {"description_width": "70px"}
    slider = dict(step=0.05, style=style, continuous_update=False)
    lam_e = W.FloatSlider(value=cfg.lambda_e, min=1.0, max=3.0, description="lambda_e", **slider)
    lam_i = W.FloatSlider(value=cfg.lambda_i, min=0.0, max=1.0, description="lambda_i", **slider)
    tau = W.FloatSlider(value=cfg.tau, min=0.0, max=2.0, description="tau", **slider)
    mode = W.ToggleButtons(options=list(A1_MODES), value=cfg.a1_mode, description="a1 mode", style=style)
    colour = W.ToggleButtons(options=["class", "advantage", "a2", "change"], value=color_by,
                             description="colour", style=style,
                             tooltips=["gate class", "A = lambda_t a2", "teacher signal a2",
                                       "change of log pi after one SGD step"])
    picture = W.Image(value=start, format="png", layout=W.Layout(max_width="100%"))
    message = W.HTML(value=readout(cfg))

    def redraw(_=None):
        try:
            c = cfg.replace(lambda_e=lam_e.value, lambda_i=lam_i.value, tau=tau.value, a1_mode=mode.value)
        except ValueError as err:          # e.g. lambda_e = 1 with lambda_i < 1 is refused by GateConfig
            message.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
            return
        picture.value = png(c, colour.value)
        message.value = readout(c)

    for w in (lam_e, lam_i, tau, mode, colour):
        w.observe(redraw, names="value")
    box = W.VBox([W.HBox([lam_e, lam_i, tau]), W.HBox([mode, colour]), message, picture])
    box.add_class("sgopd-gate-explorer")
    # the widget for live frontends, the starting PNG for static ones (each picks what it renders)
    display({**box._repr_mimebundle_(), **static}, raw=True)
    return box


def plot_position_pushes(labels, student_p, teacher_p, pushes: dict, title: str | None = None):
    """What losses do to ONE position's distribution: left, the student's and the teacher's
    probabilities of a few vocabulary entries; right, for each loss ({name: values}) the
    direction a gradient-descent step moves each entry's logit (minus the gradient w.r.t. the
    logits, scaled to a largest |value| of 1 per loss so that losses of different sizes compare).
    labels, student_p, teacher_p and every pushes value: 1-D, one entry per vocabulary item."""
    plt = _plt()
    x = np.arange(len(labels))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 0.7 * len(labels) * 2 + 2), 3.2))
    left.bar(x - 0.2, student_p, 0.4, label="student pi_old", color="#9ecae1")
    left.bar(x + 0.2, teacher_p, 0.4, label="teacher pi_T", color="#fdae6b")
    left.set_ylabel("probability")
    left.set_title("the distribution at this position", fontsize=9)
    width = 0.8 / max(len(pushes), 1)
    for j, (name, values) in enumerate(pushes.items()):
        v = np.asarray(values, dtype=float)
        v = v / max(float(np.abs(v).max()), 1e-12)
        right.bar(x - 0.4 + width * (j + 0.5), v, width, label=name)
    right.axhline(0, color="k", lw=0.6)
    right.set_ylabel("logit moves (scaled)")
    right.set_title("minus the gradient of each loss w.r.t. these logits", fontsize=9)
    for ax in (left, right):
        ax.set_xticks(x)
        ax.set_xticklabels([_visible(str(t)) for t in labels], family="monospace")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_kl_estimators(x, exact, k1_mean, k1_sem, k3_mean, k3_sem, xlabel: str = "p_old(token A)",
                       title: str = "sampled estimates of KL(pi_old || pi_T)"):
    """Exact KL against the Monte-Carlo means of the k1 (= -mean a2) and k3 estimators, with
    +-2 standard errors, along a 1-D family of distributions (arrays of equal length)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    x = np.asarray(x, dtype=float)
    ax.plot(x, exact, "k-", lw=2, label="exact KL(pi_old || pi_T)")
    ax.errorbar(x, k1_mean, yerr=2 * np.asarray(k1_sem), fmt="o", ms=4, capsize=2,
                label="k1 = mean(log pi_old - log pi_T) = -mean(a2)")
    ax.errorbar(x + 0.004, k3_mean, yerr=2 * np.asarray(k3_sem), fmt="s", ms=4, capsize=2,
                label="k3 = mean((r - 1) - log r), r = pi_T/pi_old")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("nats")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_value_histograms(values: dict, bins: int = 60, xlabel: str = "a2 = log pi_T - log pi_old",
                          title: str | None = None):
    """Overlaid histograms of per-token values ({name: 1-D array}), with each mean marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    allv = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values.values()]) if values else np.zeros(1)
    edges = np.linspace(allv.min(), allv.max() + 1e-9, bins + 1)
    for name, v in values.items():
        v = np.asarray(v, dtype=float).ravel()
        line = ax.hist(v, bins=edges, alpha=0.5, label=f"{name} (mean {v.mean():+.3f}, {v.size} tokens)")
        ax.axvline(v.mean(), ls="--", color=line[2][0].get_facecolor(), alpha=1.0)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tokens")
    ax.set_title(title or xlabel, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_labelled_bars(values: dict, ylabel: str = "", title: str = "", fmt: str = "{:.3f}",
                       errors: dict | None = None, ax=None):
    """A bar per entry ({label: value}), each annotated; optional error bars ({label: err})."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(values) + 1.5), 3.2))
    labels = list(values)
    heights = [float(values[k]) for k in labels]
    yerr = None if errors is None else [float(errors.get(k, 0.0)) for k in labels]
    bars = ax.bar(range(len(labels)), heights, yerr=yerr, capsize=3, color="#6baed6")
    for b, h in zip(bars, heights):
        ax.text(b.get_x() + b.get_width() / 2, h, fmt.format(h), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


SKILL_BAR_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
START_LINE_STYLES = ("--", ":", "-.")


def plot_skill_bars(cells: dict, start: dict | None = None, title: str | None = None,
                    ylabel: str = "avg@8 (points)"):
    """Accuracy per skill after training: one group of bars per skill, one bar per method (its
    mean over seeds, the error bar its 95% interval), and the start points (e.g. the student
    before training and the teacher) as a dashed mark across each skill's group.

    cells: {method label: {skill: (mean, half-width)}}, values in [0, 1] (drawn in points x100);
        every method lists the same skills, in the order they are drawn.
    start: {label: {skill: value in [0, 1]}}, optional.
    """
    plt = _plt()
    methods = list(cells)
    skills = list(cells[methods[0]])
    width = 0.8 / len(methods)                 # the bars of one skill share 0.8 of a unit
    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    for i, name in enumerate(methods):
        x = np.arange(len(skills)) - 0.4 + width * (i + 0.5)
        means = [100 * cells[name][s][0] for s in skills]
        halves = [100 * cells[name][s][1] for s in skills]
        ax.bar(x, means, width, yerr=halves, capsize=2, label=name,
               color=SKILL_BAR_COLORS[i % len(SKILL_BAR_COLORS)], error_kw={"elinewidth": 1})
    centers = np.arange(len(skills))
    for j, (label, values) in enumerate((start or {}).items()):
        # one mark across each skill's group, all marks of one start point a single legend entry
        ax.hlines([100 * values[s] for s in skills], centers - 0.45, centers + 0.45, colors="black",
                  linestyles=START_LINE_STYLES[j % len(START_LINE_STYLES)], linewidth=1.2, label=label)
    ax.set_xticks(range(len(skills)), skills)
    ax.set_xlabel("skill (problems that need it)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "accuracy per skill: mean ± 95% interval over seeds", fontsize=9)
    return fig


def ablation_rows(run_dirs, metric: str | None = None) -> list[dict]:
    """One row per finished run directory (written by `train.Trainer`): its gate knobs
    (lambda_e, lambda_i, lambda_n, tau, a1_mode), method, seed, and the last logged value of
    `metric` (default: the last `eval_avg@n` key found). Directories without config.json or
    metrics.jsonl, or without the metric, are skipped."""
    rows = []
    for d in run_dirs:
        d = Path(d)
        if not ((d / "config.json").is_file() and (d / "metrics.jsonl").is_file()):
            continue
        cfg = json.loads((d / "config.json").read_text())
        history = read_jsonl(d / "metrics.jsonl")
        key = metric
        if key is None:
            keys = [k for m in history for k in m if k.startswith("eval_avg@")]
            key = keys[-1] if keys else None
        values = [m[key] for m in history if key and m.get(key) is not None]
        if not values:
            continue
        gate = cfg.get("gate") or {}
        rows.append({"run": str(d), "method": cfg.get("method"), "seed": cfg.get("seed"),
                     "lambda_e": gate.get("lambda_e"), "lambda_i": gate.get("lambda_i"),
                     "lambda_n": gate.get("lambda_n"), "tau": gate.get("tau"),
                     "a1_mode": gate.get("a1_mode"), "metric": key, "value": float(values[-1])})
    return rows


def plot_ablation_heatmap(rows: list[dict], x: str = "lambda_e", y: str = "lambda_i",
                          facet: str | None = "tau", value: str = "value", title: str | None = None,
                          baseline: float | None = None):
    """Final accuracy over a grid of gate knobs: mean over seeds in each cell, annotated with
    the spread (min-max over seeds) and the number of seeds.

    rows: dicts with keys x, y, (facet), value (e.g. from `ablation_rows`). One panel per
    distinct facet value (e.g. tau). baseline: a reference value (e.g. plain OPD) drawn in each
    panel's title, so cells read as better or worse than it.
    """
    import matplotlib.colors as mcolors

    plt = _plt()
    facets = sorted({r.get(facet) for r in rows}, key=lambda v: (v is None, v)) if facet else [None]
    xs = sorted({r[x] for r in rows})
    ys = sorted({r[y] for r in rows})
    vals = [r[value] for r in rows]
    vmin, vmax = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.01, vmax + 0.01
    norm = mcolors.Normalize(vmin=vmin, vmax=vmax)
    fig, axes = plt.subplots(1, len(facets), figsize=(max(6.0, 1.6 * len(xs) * len(facets) + 2.6), max(3.6, 1.0 * len(ys) + 1.9)),
                             squeeze=False, layout="constrained")
    image = None
    for ax, fv in zip(axes[0], facets):
        grid = np.full((len(ys), len(xs)), np.nan)
        for i, yv in enumerate(ys):
            for j, xv in enumerate(xs):
                cell = [r[value] for r in rows if r[x] == xv and r[y] == yv and (not facet or r.get(facet) == fv)]
                if not cell:
                    continue
                grid[i, j] = float(np.mean(cell))
                text = f"{np.mean(cell):.3f}"
                if len(cell) > 1:
                    text += f"\nrange {min(cell):.3f}-{max(cell):.3f}\nn={len(cell)}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if norm(np.mean(cell)) < 0.45 else "black")
        image = ax.imshow(grid, cmap="viridis", norm=norm, origin="lower", aspect="auto")
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([f"{v:g}" for v in xs])
        ax.set_yticks(range(len(ys)))
        ax.set_yticklabels([f"{v:g}" for v in ys])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        head = f"{facet} = {fv:g}" if facet and fv is not None else ""
        if baseline is not None:
            head += f"{'; ' if head else ''}plain OPD {baseline:.3f}"
        ax.set_title(head, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), fraction=0.05, pad=0.03,
                     label=rows[0].get("metric", value) if rows else value)
    fig.suptitle(title or "final accuracy: mean over seeds [min, max]", fontsize=10)
    return fig


def plot_sweep_heatmap(cells: list[dict], x: str, y: str, metric: str = "avg", title: str | None = None):
    """A two-axis sweep as a heatmap: each cell's mean over seeds, annotated "mean ± half-width"
    of its 95% interval (in points) and its number of seeds. Axis levels are labels (strings or
    numbers, in the order they first appear), so categorical knobs (a1_mode) work too.

    cells: dicts with keys x, y (the cell's levels), "mean", "half", "n" (values in [0, 1]);
    a cell left out of the list is drawn empty.
    """
    import matplotlib.colors as mcolors

    plt = _plt()
    xs = list(dict.fromkeys(str(c[x]) for c in cells))
    ys = list(dict.fromkeys(str(c[y]) for c in cells))
    grid = np.full((len(ys), len(xs)), np.nan)
    for c in cells:
        grid[ys.index(str(c[y])), xs.index(str(c[x]))] = c["mean"]
    finite = grid[np.isfinite(grid)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.01, vmax + 0.01
    norm = mcolors.Normalize(vmin=vmin, vmax=vmax)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(xs) + 2.2), max(3.0, 0.9 * len(ys) + 1.6)),
                           layout="constrained")
    image = ax.imshow(grid, cmap="viridis", norm=norm, origin="lower", aspect="auto")
    for c in cells:
        i, j = ys.index(str(c[y])), xs.index(str(c[x]))
        ax.text(j, i, f"{100 * c['mean']:.1f} ± {100 * c['half']:.1f}\nn={c['n']}", ha="center", va="center",
                fontsize=8, color="white" if norm(c["mean"]) < 0.45 else "black")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03, label=metric)
    ax.set_title(title or f"{metric}: mean ± 95% half-width over seeds (points)", fontsize=9)
    return fig


def plot_process_layout(prompts_per_step: int, group_size: int, num_processes: int):
    """How one optimizer step's rollouts sit on the processes of a multi-process run: each
    process samples its own B prompts and G rollouts per prompt (a group never crosses
    processes); the loss normaliser N counts every response token of every process."""
    plt = _plt()
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(min(1.0 + 0.35 * prompts_per_step * group_size, 13), 0.9 * num_processes + 1.2))
    for p in range(num_processes):
        for b in range(prompts_per_step):
            for g in range(group_size):
                xpos = b * (group_size + 0.6) + g
                ax.add_patch(plt.Rectangle((xpos, -p - 1), 0.9, 0.7, color=cmap((p * prompts_per_step + b) % 20),
                                           alpha=0.85))
            # every process draws its own prompts: a different colour for every (process, prompt)
            ax.text(b * (group_size + 0.6) + group_size / 2 - 0.3, -p - 0.15,
                    f"prompt {p * prompts_per_step + b}", ha="center", va="bottom", fontsize=7)
        ax.text(-0.5, -p - 0.65, f"process {p}", ha="right", va="center", fontsize=9)
    width = prompts_per_step * (group_size + 0.6)
    ax.set_xlim(-3.5, width)
    ax.set_ylim(-num_processes - 0.2, 0.4)
    ax.axis("off")
    ax.set_title(f"{num_processes} processes x {prompts_per_step} prompts x G={group_size} rollouts: "
                 "a1 uses one group (one colour), N sums every token of every process",
                 fontsize=9, loc="left")
    fig.tight_layout()
    return fig
