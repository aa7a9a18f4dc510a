"""What a suite run measures: the matrix options shared by the pytest plugin and ``qigbench run``.

Defaults depend on the *tier* of the models: tiny offline models (``tiny-*``, ``smollm2-135m``)
get the offline task pack, fidelity metrics and a small calibration set so a 2-core CPU finishes
in minutes; real models get the paper's benchmarks and its 128 calibration samples. Every
default can be overridden on the command line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from qigbench.device import check_device
from qigbench.errors import QigbenchError, check_positive
from qigbench.quant import parse_format

OnConflict = Literal["replace", "skip"]

#: The paper's Table 2 methods and formats (SmoothQuant applies to W4A8 only in the paper), plus the
#: project's two other seed methods, Q-VLM and TLQ.
DEFAULT_METHODS: tuple[str, ...] = ("rtn", "awq", "mbq", "qig", "qvlm", "tlq")
DEFAULT_FORMATS: tuple[str, ...] = ("W3A16", "W4A8")
#: Table 2 benchmarks, as paper aliases (lmms-eval tasks).
PAPER_VLM_TASKS: tuple[str, ...] = ("vizwiz", "mmmu", "chartqa", "ai2d", "scienceqa")
#: Offline stand-ins on tiny models: one generation task, one multiple-choice task, one OCR task.
TINY_VLM_TASKS: tuple[str, ...] = ("qig_vqa_colour", "qig_mc_chart", "qig_ocr")
PAPER_OCR_TASKS: tuple[str, ...] = ("docvqa", "chartqa", "ocrbench")
TINY_OCR_TASKS: tuple[str, ...] = ("qig_ocr", "qig_mc_chart")
PAPER_LM_TASKS: tuple[str, ...] = ("wikitext", "piqa", "arc_e", "arc_c", "mmlu")
TINY_LM_TASKS: tuple[str, ...] = ("qig_text_ppl", "qig_text_mc")
#: Pseudo-task: KL / flip rate against the fp model and the mean block error of calibration.
FIDELITY_TASK = "fidelity"
PAPER_SAMPLES = 128
TINY_SAMPLES = 16
TINY_PREFIXES = ("tiny-", "smollm2-")


class SuiteOptionError(QigbenchError, ValueError):
    """A suite option that cannot be used as given."""


def split_list(values: str | Iterable[str] | None) -> list[str]:
    """``["a,b", "c"]`` or ``"a, b"`` -> ``["a", "b", "c"]`` (repeatable and comma forms mix)."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def is_tiny(model: str) -> bool:
    return Path(model).name.startswith(TINY_PREFIXES)


def is_multimodal(model: str) -> bool:
    """Whether ``model`` (alias or folder) is a VLM, without loading weights."""
    from qigbench.models.aliases import alias_for
    from qigbench.models.registry import family_named

    alias = alias_for(model)
    if alias is not None:
        return family_named(alias.family).multimodal
    config = Path(model).expanduser() / "config.json"
    if config.is_file():
        return "vision_config" in config.read_text()
    raise SuiteOptionError(f"unknown model {model!r}: use an alias from `qigbench models` or a checkpoint folder")


@dataclass(frozen=True)
class SuiteOptions:
    """The resolved matrix options (``None`` = tier default, filled in by :meth:`resolved`)."""

    models: tuple[str, ...] = ("tiny-qwen2vl",)
    methods: tuple[str, ...] = DEFAULT_METHODS
    formats: tuple[str, ...] = DEFAULT_FORMATS
    tasks: tuple[str, ...] | None = None
    lm_models: tuple[str, ...] | None = None
    lm_tasks: tuple[str, ...] | None = None
    limit: int | None = None
    samples: int | None = None
    seeds: tuple[int, ...] = (0,)
    db: Path = Path("results.db")
    device: str = "cpu"
    on_conflict: OnConflict = "skip"
    cache_dir: str | None = None
    batch_size: int = 4
    eval_batch_size: int = 1
    keep_models: int = 2  # quantized models kept in memory (tasks of one configuration run together)
    heatmaps: bool = True
    heatmap_dir: Path | None = None  # where token-sensitivity heatmaps go; None = heatmaps/ next to --db
    #: e.g. "8GiB", passed to every calibration (None: a safe share of free memory)
    memory_budget: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: method options the user adds to every case they apply to (``[METHOD:]KEY=VALUE``, e.g.
    #: ``qig.steps=8`` or ``qig-gptq:damp=0.02``); each case's label shows what they change
    method_options: tuple[tuple[str, str], ...] = ()
    #: check here that ``device`` exists; off when this process only plans (``--dry-run``) or hands
    #: the jobs to other machines (Ray, SLURM), whose devices it cannot see
    verify_device: bool = True

    def __post_init__(self) -> None:
        if not self.models:
            raise SuiteOptionError("no model given; pass --model ALIAS (e.g. tiny-qwen2vl) or a checkpoint folder")
        for fmt in self.formats:
            parse_format(fmt)
        if self.on_conflict not in ("replace", "skip"):
            raise SuiteOptionError(f"--on-conflict must be replace or skip, got {self.on_conflict!r}")
        if self.limit is not None and self.limit < 1:
            raise SuiteOptionError(f"--limit must be >= 1, got {self.limit}")
        if self.samples is not None and self.samples < 1:
            raise SuiteOptionError(f"--samples must be >= 1, got {self.samples}")
        if not self.seeds:
            raise SuiteOptionError("--seeds needs at least one seed, e.g. --seeds 0")
        for name, value in (("batch size", self.batch_size), ("eval batch size", self.eval_batch_size),
                            ("keep_models", self.keep_models)):
            check_positive(name, value)
        if self.verify_device:
            check_device(self.device)

    @property
    def tiny(self) -> bool:
        return all(is_tiny(m) for m in self.models)

    @property
    def vlm_models(self) -> tuple[str, ...]:
        return tuple(m for m in self.models if is_multimodal(m))

    def language_models(self) -> tuple[str, ...]:
        """Models of the LLaMA extension: ``--lm-model``, else the LMs among ``--model``, else by tier."""
        if self.lm_models is not None:
            return self.lm_models
        lms = tuple(m for m in self.models if not is_multimodal(m))
        return lms or (("tiny-llama",) if self.tiny else ("llama2",))

    def vlm_tasks(self) -> tuple[str, ...]:
        return self.tasks if self.tasks is not None else (TINY_VLM_TASKS if self.tiny else PAPER_VLM_TASKS)

    def ocr_tasks(self) -> tuple[str, ...]:
        return TINY_OCR_TASKS if self.tiny else PAPER_OCR_TASKS

    def text_tasks(self) -> tuple[str, ...]:
        if self.lm_tasks is not None:
            return self.lm_tasks
        return TINY_LM_TASKS if all(is_tiny(m) for m in self.language_models()) else PAPER_LM_TASKS

    def samples_for(self, model: str) -> int:
        return self.samples if self.samples is not None else (TINY_SAMPLES if is_tiny(model) else PAPER_SAMPLES)

    def formats_among(self, wanted: Sequence[str]) -> tuple[str, ...]:
        """The table's paper formats that the run asked for (``--formats``), in the table's order."""
        asked = {parse_format(f).name for f in self.formats}
        return tuple(f for f in wanted if parse_format(f).name in asked)

    def with_(self, **changes: object) -> SuiteOptions:
        return replace(self, **changes)  # type: ignore[arg-type]


def build_options(
    *,
    models: Iterable[str] | str | None = None,
    methods: Iterable[str] | str | None = None,
    formats: Iterable[str] | str | None = None,
    tasks: Iterable[str] | str | None = None,
    lm_models: Iterable[str] | str | None = None,
    lm_tasks: Iterable[str] | str | None = None,
    seeds: Iterable[str] | str | None = None,
    method_options: Iterable[str] | str | None = None,
    **rest: object,
) -> SuiteOptions:
    """:class:`SuiteOptions` from command-line strings (lists may be repeated or comma-separated;
    ``method_options`` are repeated ``[METHOD:]KEY=VALUE`` strings, not split on commas)."""
    fields: dict[str, object] = dict(rest)
    if method_options:
        fields["method_options"] = parse_method_options(
            [method_options] if isinstance(method_options, str) else list(method_options)
        )
    if split_list(models):
        fields["models"] = tuple(split_list(models))
    if split_list(methods):
        fields["methods"] = tuple(m.lower() for m in split_list(methods))
    if split_list(formats):
        fields["formats"] = tuple(parse_format(f).name for f in split_list(formats))
    for name, value in (("tasks", tasks), ("lm_models", lm_models), ("lm_tasks", lm_tasks)):
        if split_list(value):
            fields[name] = tuple(split_list(value))
    if split_list(seeds):
        try:
            fields["seeds"] = tuple(int(s) for s in split_list(seeds))
        except ValueError:
            raise SuiteOptionError(f"--seeds takes integers, e.g. --seeds 0,1,2 (got {seeds!r})") from None
    if "db" in fields and fields["db"] is not None:
        fields["db"] = Path(str(fields["db"]))
    return SuiteOptions(**{k: v for k, v in fields.items() if v is not None})  # type: ignore[arg-type]


def parse_method_options(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``["qig.steps=8", "qig-gptq:damp=0.02"]`` -> ``(("qig.steps", "8"), ("qig-gptq:damp", "0.02"))``."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or key.strip().endswith(":"):
            raise SuiteOptionError(f"method option {pair!r} must look like [METHOD:]KEY=VALUE, e.g. qig.steps=8")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def pin_threads(options: SuiteOptions) -> None:
    """Tiny models on CPU run single-threaded: float reductions then happen in one fixed order, so
    the committed baseline reproduces bit for bit on any machine (the check's tolerance is for
    real regressions, not for thread-count noise). Larger runs keep torch's default."""
    import torch

    models = [*options.models, *(options.lm_models or ())]
    if options.device == "cpu" and models and all(is_tiny(m) for m in models):
        torch.set_num_threads(1)
