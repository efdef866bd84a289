"""Pictures of a run: per-token gate decisions, gate-class fractions, learning curves, the PTS
schedule. Every function returns a matplotlib Figure (or an HTML string); notebooks only show
them. Input records are the ones the trainer writes (`rollouts.jsonl`, `metrics.jsonl`).
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
