"""Offline task pack: seeded synthetic tasks in the harnesses' own YAML format (see :mod:`.pack`)."""

from qigbench.eval.tasks.pack import LM_SUBDIR, LM_TASKS, LMMS_SUBDIR, LMMS_TASKS, write_task_pack

__all__ = ["LMMS_SUBDIR", "LMMS_TASKS", "LM_SUBDIR", "LM_TASKS", "write_task_pack"]
