"""Compatibility shim: the study now lives in `sgopd_lite.study` (plan.py: the plan and its
workers; report.py: docs/results.md). Everything public of both is re-exported here.

May import: study.plan, study.report only (nothing in the package imports this module).
"""

from .study.plan import *  # noqa: F401,F403
from .study.plan import (CURVE_EVERY, CURVE_KEYS, DOCS_DIR, EVAL_N, EVAL_PROBLEMS, GRID_LAMBDA_E,  # noqa: F401
                         GRID_LAMBDA_I, GRID_SEEDS, GRID_SETTING, METHOD_NAMES, METHODS, REPO_DIR, RESULTS_DIR,
                         SEEDS, SETTING_NAMES, SETTINGS, SMOL_CONFIG, SMOL_METHODS, SMOL_SEEDS, STEPS, WORK_DIR,
                         RunSpec, full_history, machine, pending, plan, reproduce, reproduce_smol, run_one,
                         smol_plan, smol_start_points, start_points)
from .study.report import ReportError, load_summaries, mean_ci, write_report  # noqa: F401
