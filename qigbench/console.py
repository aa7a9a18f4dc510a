"""What a user sees on the terminal: our own progress lines, not the libraries' chatter.

transformers, datasets, huggingface_hub, lmms-eval and lm-eval each draw tqdm bars ("Loading
weights", "Generating test split", "Postprocessing", per-request bars) and log at INFO/WARNING;
a default ``qigbench run`` printed ~700 lines of them around its 35 result lines.
:func:`quiet_libraries` turns them off for the rest of the process, unless ``--verbose``:

* the documented switches where a library has one (``TRANSFORMERS_VERBOSITY``,
  ``HF_HUB_DISABLE_PROGRESS_BARS``, ``HF_DATASETS_DISABLE_PROGRESS_BARS``, set before import and
  applied through each library's API when it is already imported); a variable the user set wins;
* lmms-eval and lm-eval have no switch and pass ``disable=`` explicitly to their bars (so
  ``TQDM_DISABLE`` does not reach them): tqdm's constructor is wrapped to disable every bar
  except those created with ``qigbench_progress=True`` — our own (see :func:`progress`).

Errors and warnings of our own loggers stay visible; library loggers go to ERROR.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

LIBRARY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "lmms_eval", "lm-eval", "lm_eval", "accelerate")
_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}
_state = {"quiet": False}


def quiet_libraries() -> None:
    """Library progress bars and log output off for this process (idempotent)."""
    if _state["quiet"]:
        return
    _state["quiet"] = True
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(transformers|datasets|lmms_eval|lm_eval|torch)(\.|$)")
    if "transformers" in sys.modules:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
    _silence_tqdm()
    _silence_loguru()


def _silence_tqdm() -> None:
    from tqdm import std

    original = std.tqdm.__init__
    if getattr(original, "_qigbench_quiet", False):
        return

    def init(self: Any, *args: Any, qigbench_progress: bool = False, **kwargs: Any) -> None:
        if not qigbench_progress:
            kwargs["disable"] = True
        original(self, *args, **kwargs)

    init._qigbench_quiet = True  # type: ignore[attr-defined]
    std.tqdm.__init__ = init  # type: ignore[method-assign]


def _silence_loguru() -> None:
    """lmms-eval logs through loguru (INFO by default, on import); keep its errors only."""
    try:
        from loguru import logger
    except ImportError:
        return
    logger.remove()
    logger.add(sys.stderr, level="ERROR")


def progress(iterable: Any = None, **kwargs: Any) -> Any:
    """Our own progress bar: shown even when the libraries' bars are off."""
    from tqdm.auto import tqdm

    if _state["quiet"]:
        kwargs["qigbench_progress"] = True
    return tqdm(iterable, **kwargs)
