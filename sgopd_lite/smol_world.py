"""Compatibility shim: the smol world now lives in `sgopd_lite.worlds.smol`.

May import: worlds.smol only (nothing imports this module).
"""

from .worlds.smol import *  # noqa: F401,F403
from .worlds.smol import (SMOL_STUDENT_STEPS, SMOL_TEACHER_STEPS, SmolStudentConfig,  # noqa: F401
                          SmolTeacherConfig, finetune, response_nll, sloppy_solutions, smol_student_dir,
                          smol_teacher_dir)
