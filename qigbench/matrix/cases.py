"""The paper's tables as matrices of :class:`Case` (one quantized configuration) x tasks.

A case is everything that changes the quantized model; the tasks are measured on it. Each
``table*`` function expands :class:`SuiteOptions` into ``[(case, tasks), ...]``: the pytest suites
parametrize over these pairs, and ``qigbench run`` walks Table 2 directly.

Methods are stored under the paper's display names: ``qig-gptq`` as ``qig+gptq``, QIG with
leave-one-out sensitivity as ``loo`` (Table 6), ablation variants as ``qig [key=value]``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from qigbench.matrix.options import FIDELITY_TASK, SuiteOptions
from qigbench.quant import parse_format
from qigbench.results.identity import FP_METHOD, ConfigIdentity
from qigbench.results.row import ConfigKey

FP_FORMAT = "FP16"
DISPLAY = {"qig-gptq": "qig+gptq"}

Matrix = list[tuple["Case", tuple[str, ...]]]


@functools.cache
def resolved_config(method: str, options: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``method``'s config with ``options`` applied over its defaults, as plain JSON-able data."""
    from qigbench.engine.method import get_method

    return get_method(method, dict(options)).describe()["config"]


@functools.cache
def consumes_calibration(method: str, options: tuple[tuple[str, str], ...] = ()) -> bool:
    """Whether ``method`` uses calibration data (its plugin's ``needs_calibration``; RTN does not)."""
    from qigbench.engine.method import get_method

    return bool(get_method(method, dict(options)).needs_calibration)


@dataclass(frozen=True)
class Case:
    """One configuration of one table: model, method (+ options), format, calibration, seed."""

    table: str
    model: str
    method: str  # the method plugin name (``fp16`` = the unquantized model)
    format: str
    samples: int
    seed: int = 0
    options: tuple[tuple[str, str], ...] = ()
    calib: str = "default"  # "default" (the model's synthetic caption/text set) or "ocr"
    label: str | None = None  # stored method name; None = derived from method and options
    heavy: bool = False  # a scaled-up variant (e.g. Table A3's doubled set): not in the CI selection
    limit: int | None = None  # examples per task its rows are measured on (--limit); None: all

    @property
    def is_fp(self) -> bool:
        return self.method == FP_METHOD

    @property
    def stored_method(self) -> str:
        if self.label is not None:
            return self.label
        base = DISPLAY.get(self.method, self.method)
        if not self.options:
            return base
        return f"{base} [{','.join(f'{k}={v}' for k, v in self.options)}]"

    def identity(self) -> ConfigIdentity:
        """The configuration's identity (:mod:`qigbench.results.identity`): the same as
        ``qigbench quantize`` builds for this model, method, options, format and calibration."""
        if self.is_fp:
            return ConfigIdentity.fp(self.model, limit=self.limit)
        return ConfigIdentity(
            model=self.model,
            method=self.method,
            format=self.format,
            options=self.options,
            config=resolved_config(self.method, self.options),
            samples=self.samples,
            calibration=self.calib,
            calibrated=consumes_calibration(self.method, self.options),
            limit=self.limit,
        )

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the quantized configuration (the seed is its own key column)."""
        return self.identity().payload()

    def config_hash(self) -> str:
        return self.identity().hash()

    def key(self) -> ConfigKey:
        return ConfigKey(self.model, self.stored_method, self.format, self.config_hash(), self.seed)

    def ident(self) -> str:
        calib = "" if self.calib == "default" else f"-{self.calib}{self.samples}"
        seed = "" if self.is_fp else f"-s{self.seed}"
        return f"{self.model}-{self.stored_method.replace(' ', '')}-{self.format}{calib}{seed}"


def _quantized(
    table: str,
    opts: SuiteOptions,
    models: Sequence[str],
    methods: Sequence[str | tuple[str, tuple[tuple[str, str], ...], str | None]],
    formats: Sequence[str],
    tasks: tuple[str, ...],
    *,
    calib: str = "default",
    samples: int | None = None,
) -> Matrix:
    out: Matrix = []
    for model in models:
        n = samples if samples is not None else opts.samples_for(model)
        for fmt in formats:
            for spec in methods:
                name, options, label = (spec, (), None) if isinstance(spec, str) else spec
                for seed in opts.seeds:
                    case = Case(table, model, name, fmt, n, seed, options, calib, label, limit=opts.limit)
                    out.append((case, tasks))
    return out


def _with_fidelity(tasks: Sequence[str]) -> tuple[str, ...]:
    return tuple(tasks) if FIDELITY_TASK in tasks else (*tasks, FIDELITY_TASK)


def _eval_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    return tuple(t for t in tasks if t != FIDELITY_TASK)


def table2(opts: SuiteOptions) -> Matrix:
    """Main accuracy table: FP16 + ``--methods`` x ``--formats`` x tasks (+ fidelity on each).

    Language models named in ``--model`` get the same methods and formats with the fidelity metrics
    only (MBQ is left out for them: it balances vision against text tokens)."""
    tasks = opts.vlm_tasks()
    out: Matrix = []
    for model in opts.vlm_models:
        fp_tasks = _eval_tasks(tasks)
        if fp_tasks:
            out.append((Case("table2", model, FP_METHOD, FP_FORMAT, 0, limit=opts.limit), fp_tasks))
    out += _quantized("table2", opts, opts.vlm_models, opts.methods, opts.formats, _with_fidelity(tasks))
    text_models = tuple(m for m in opts.models if m not in opts.vlm_models)
    text_methods = tuple(m for m in opts.methods if m != "mbq")
    out += _quantized("table2", opts, text_models, text_methods, opts.formats, (FIDELITY_TASK,))
    return out


def table5(opts: SuiteOptions) -> Matrix:
    """QIG+GPTQ vs GPTQ (paper: W3A16)."""
    formats = opts.formats_among(("W3A16",))
    return _quantized("table5", opts, opts.vlm_models, ("gptq", "qig-gptq"), formats, _with_fidelity(opts.vlm_tasks()))


def table6(opts: SuiteOptions) -> Matrix:
    """Calibration cost of MBQ, QIG, leave-one-out sensitivity, Q-VLM and TLQ (paper: GPU hours; W3A16 here)."""
    formats = opts.formats_among(("W3A16",)) or opts.formats[:1]
    methods = ("mbq", "qig", ("qig", (("sensitivity", "leave_one_out"),), "loo"), "qvlm", "tlq")
    return _quantized("table6", opts, opts.vlm_models, methods, formats, (FIDELITY_TASK,))


def tableA2(opts: SuiteOptions) -> Matrix:
    """LLaMA extension: GPTQ vs QIG+GPTQ at 3 bits on language models (PPL, PIQA, ARC, MMLU)."""
    models = opts.language_models()
    formats = opts.formats_among(("W3A16",))
    tasks = _with_fidelity(opts.text_tasks())
    out: Matrix = [(Case("tableA2", m, FP_METHOD, FP_FORMAT, 0, limit=opts.limit), _eval_tasks(tasks)) for m in models]
    return out + _quantized("tableA2", opts, models, ("gptq", "qig-gptq"), formats, tasks)


def tableA3(opts: SuiteOptions) -> Matrix:
    """OCR calibration set at ``--samples`` and twice that (paper: 128 and 256), MBQ vs QIG, W4A8."""
    formats = opts.formats_among(("W4A8",))
    tasks = _with_fidelity(opts.ocr_tasks())
    out: Matrix = []
    for model in opts.vlm_models:
        base = opts.samples_for(model)
        for n in (base, 2 * base):
            methods = (("mbq", (), f"mbq [ocr-{n}]"), ("qig", (), f"qig [ocr-{n}]"))
            cases = _quantized("tableA3", opts, [model], methods, formats, tasks, calib="ocr", samples=n)
            out += [(replace(c, heavy=n > base), t) for c, t in cases]
    return out


#: Ablations (paper: W4A8). Table 1: sensitivity estimators in place of QIG's.
SENSITIVITY_ABLATION = ("uniform", "gradient", "attention", "leave_one_out")
#: Table 4: (IG baseline, objective); the paper's QIG row (quantized, fx_minus_fxq) is plain ``qig``.
IG_ABLATION = (("zero", "fx"), ("zero", "fx_minus_f0"), ("quantized", "fx"))
#: Table A1: clipping of the raw scores; ``iqr`` is QIG's default.
CLIPPING_ABLATION = ("none", "top5-zero", "top5-mean")
#: Integration steps (the default is 32).
STEPS_ABLATION = ("8",)


def _ablation_tasks(opts: SuiteOptions, paper: tuple[str, ...]) -> tuple[str, ...]:
    return (FIDELITY_TASK,) if opts.tiny else _with_fidelity(paper)


def ablation_table1(opts: SuiteOptions) -> Matrix:
    methods: list[Any] = ["mbq", "qig"]
    methods += [("qig", (("sensitivity", s),), f"qig [sensitivity={s}]") for s in SENSITIVITY_ABLATION]
    tasks = _ablation_tasks(opts, ("vizwiz",))
    return _quantized("table1", opts, opts.vlm_models, methods, opts.formats_among(("W4A8",)), tasks)


def ablation_table4(opts: SuiteOptions) -> Matrix:
    methods: list[Any] = ["qig"]
    methods += [(("qig", (("qig.baseline", b), ("qig.objective", o)), None)) for b, o in IG_ABLATION]
    tasks = _ablation_tasks(opts, ("chartqa", "vizwiz"))
    return _quantized("table4", opts, opts.vlm_models, methods, opts.formats_among(("W4A8",)), tasks)


def ablation_tableA1(opts: SuiteOptions) -> Matrix:
    methods: list[Any] = ["qig"]
    methods += [("qig", (("qig.clipping", c),), None) for c in CLIPPING_ABLATION]
    methods += [("qig", (("qig.steps", s),), None) for s in STEPS_ABLATION]
    tasks = _ablation_tasks(opts, ("vizwiz", "mmmu", "scienceqa"))
    return _quantized("tableA1", opts, opts.vlm_models, methods, opts.formats_among(("W4A8",)), tasks)


#: TLQ's ablations (reference/q-vlm-and-tlq.md 2(e)): importance on/off x exposure on/off, and the
#: token selection ratio (the default, 1.0, is plain ``tlq``).
TLQ_ABLATION: tuple[tuple[tuple[str, str], ...], ...] = (
    (("importance", "uniform"),),
    (("exposure", "false"),),
    (("importance", "uniform"), ("exposure", "false")),
    (("selection", "0.5"),),
    (("selection", "0.25"),),
)
#: Q-VLM's own setting: LLaVA-v1.3-13B fine-tuned on ScienceQA, W4A4 (the paper reports 80.78).
QVLM_FORMAT = "W4A4"
QVLM_VARIANTS: tuple[Any, ...] = (
    "rtn",
    "smoothquant",
    "qvlm",
    ("qvlm", (("mode", "paper"),), None),
    # what the release does on any hidden size but 4096 (the 13B model): every range dynamic
    ("qvlm", (("dynamic_all", "true"),), None),
)


def tlq_ablation(opts: SuiteOptions) -> Matrix:
    methods: list[Any] = ["tlq", *(("tlq", options, None) for options in TLQ_ABLATION)]
    tasks = _ablation_tasks(opts, ("vizwiz", "scienceqa"))
    return _quantized("tlq_ablation", opts, opts.vlm_models, methods, opts.formats_among(("W4A8",)), tasks)


def tlq_comparison(opts: SuiteOptions) -> Matrix:
    """TLQ's own comparison: TLQ vs MBQ vs RTN vs SmoothQuant (W4A8 only) on the given VLMs (paper:
    LLaVA-OneVision and Qwen2-VL), W3A16 and W4A8."""
    tasks = _with_fidelity(opts.vlm_tasks())
    out: Matrix = []
    for fmt in opts.formats_among(("W3A16", "W4A8")):
        methods = ("rtn", "mbq", "tlq", *(("smoothquant",) if not parse_format(fmt).weight_only else ()))
        out += _quantized("tlq_compare", opts, opts.vlm_models, methods, (fmt,), tasks)
    return out


def qvlm_setting(opts: SuiteOptions) -> Matrix:
    """Q-VLM's setting at W4A4 (always: it is the paper's format) on the given VLMs; the paper's
    model is LLaVA-v1.3-13B-ScienceQA (``--model`` a converted checkpoint folder of that name),
    on ScienceQA (tiny models: the offline multiple-choice task)."""
    tasks = _with_fidelity(("qig_mc_chart",) if opts.tiny else ("scienceqa",))
    fp = [Case("qvlm_setting", m, FP_METHOD, FP_FORMAT, 0, limit=opts.limit) for m in opts.vlm_models]
    out: Matrix = [(case, _eval_tasks(tasks)) for case in fp]
    return out + _quantized("qvlm_setting", opts, opts.vlm_models, QVLM_VARIANTS, (QVLM_FORMAT,), tasks)


def items(matrix: Matrix) -> list[tuple[Case, str]]:
    """Flatten to ``(case, task)`` pairs, configuration-major so a configuration's tasks run together."""
    return [(case, task) for case, tasks in matrix for task in tasks]


def item_id(case: Case, task: str) -> str:
    return f"{case.ident()}-{task}"


#: Builders by the name a suite passes to ``@pytest.mark.matrix(NAME)``.
TABLES = {
    "table2": table2,
    "table5": table5,
    "table6": table6,
    "tableA2": tableA2,
    "tableA3": tableA3,
    "table1": ablation_table1,
    "table4": ablation_table4,
    "tableA1": ablation_tableA1,
    "tlq_ablation": tlq_ablation,
    "tlq_compare": tlq_comparison,
    "qvlm_setting": qvlm_setting,
}


def is_slow(case: Case) -> bool:
    """Items left out of the CI selection (``-m "not slow"``): the ablations (and the Q-VLM / TLQ
    setting suites, whose methods CI checks in Table 2), leave-one-out
    sensitivity (one forward per token) and Table A3's doubled calibration set."""
    ablation = case.table in ("table1", "table4", "tableA1", "tlq_ablation", "tlq_compare", "qvlm_setting")
    return ablation or ("sensitivity", "leave_one_out") in case.options or case.heavy
