"""The paper's tables as matrices of :class:`Case` (one quantized configuration) x tasks.

A case is everything that changes the quantized model; the tasks are measured on it. Each
``table*`` function expands :class:`SuiteOptions` into ``[(case, tasks), ...]``: the pytest suites
parametrize over these pairs, and ``qigbench run`` walks Table 2 directly.

Methods are stored under one label (:func:`qigbench.results.identity.variant_label`): the paper's
display name (``qig-gptq`` as ``qig+gptq``) plus every result-changing option that departs from the
method's defaults, ``qig[steps=8]``, whether a suite or the user (``--method-option`` /
``qigbench run -o``) set it. A few suite variants have names of their own (QIG with leave-one-out
sensitivity is ``loo`` in Table 6, Table A3's sets ``mbq[ocr-16]``); options the user adds on top
of them join their brackets (``loo[...]``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from qigbench.matrix.options import FIDELITY_TASK, SuiteOptions
from qigbench.quant import parse_format
from qigbench.results.identity import DISPLAY_NAMES, FP_METHOD, ConfigIdentity, variant_label
from qigbench.results.row import ConfigKey

FP_FORMAT = "FP16"
DISPLAY = DISPLAY_NAMES

Matrix = list[tuple["Case", tuple[str, ...]]]


@functools.cache
def resolved_config(method: str, options: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``method``'s config with ``options`` applied over its defaults, as plain JSON-able data."""
    from qigbench.engine.method import get_method

    return get_method(method, dict(options)).describe()["config"]


@functools.cache
def method_config(method: str, options: tuple[tuple[str, str], ...]) -> Any:
    """``method``'s config object with ``options`` applied (cached: suites build it per case)."""
    from qigbench.engine.method import get_method

    return get_method(method, dict(options)).config


@functools.cache
def method_propagation(method: str, fmt: str) -> str | None:
    """The stream ``method`` propagates at ``fmt`` when that is not the format's own rule (GPTQ:
    quantized in W3A16 too), as :meth:`qigbench.pipeline.QuantizeRequest.identity` records it."""
    from qigbench.engine.contracts import EngineConfig
    from qigbench.engine.method import get_method

    parsed = parse_format(fmt)
    chosen = EngineConfig().resolve_propagation(parsed, type(get_method(method)).propagation)
    return None if chosen == EngineConfig().resolve_propagation(parsed) else chosen


def case_label(
    method: str,
    options: tuple[tuple[str, str], ...] = (),
    user_options: tuple[tuple[str, str], ...] = (),
    name: str | None = None,
) -> str:
    """The stored label of a case: ``name`` (a suite's own name for its variant) plus what the user's
    options change on top of the suite's, or, without a name, every change from the defaults."""
    if method == FP_METHOD:
        return name or FP_METHOD
    if name is None:
        return variant_label(method, method_config(method, (*options, *user_options)))
    if not user_options:
        return name
    return variant_label(method, method_config(method, (*options, *user_options)), method_config(method, options),
                         name=name)  # fmt: skip


def applicable_options(method: str, options: tuple[tuple[str, str], ...],
                       user: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The user's ``[METHOD:]KEY=VALUE`` options that apply to ``method`` on top of a case's own
    ``options``: scoped ones only to their method; unscoped ones to every method whose config has
    that option and accepts it with the case's own options (``qig.steps`` does not apply to QIG
    with ``sensitivity=leave_one_out``: the case keeps its own variant and its label says so)."""
    from qigbench.config import OptionError

    out: list[tuple[str, str]] = []
    for key, value in user:
        scope, sep, bare = key.partition(":")
        if sep:
            if scope != method:
                continue
            out.append((bare, value))
            method_config(method, (*options, *out))  # a scoped option that does not fit is an error
            continue
        try:
            method_config(method, (*options, *out, (key, value)))
        except OptionError:
            continue
        out.append((key, value))
    return tuple(out)

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
    label: str | None = None  # the suite's own name for this variant; None = derived from the options
    heavy: bool = False  # a scaled-up variant (e.g. Table A3's doubled set): not in the CI selection
    #: options the user added to the suite's (``--method-option``, ``qigbench run -o``), applied after them
    user_options: tuple[tuple[str, str], ...] = ()

    @property
    def is_fp(self) -> bool:
        return self.method == FP_METHOD

    @property
    def all_options(self) -> tuple[tuple[str, str], ...]:
        """The suite's options, then the user's: what the method is built with."""
        return (*self.options, *self.user_options)

    @property
    def stored_method(self) -> str:
        """The label rows, tables, plots and heatmaps show (:func:`case_label`)."""
        return case_label(self.method, self.options, self.user_options, self.label)

    def identity(self) -> ConfigIdentity:
        """The configuration's identity (:mod:`qigbench.results.identity`): the same as
        ``qigbench quantize`` builds for this model, method, options, format and calibration."""
        if self.is_fp:
            return ConfigIdentity.fp(self.model)
        return ConfigIdentity(
            model=self.model,
            method=self.method,
            format=self.format,
            options=self.all_options,
            config=resolved_config(self.method, self.all_options),
            samples=self.samples,
            calibration=self.calib,
            propagation=method_propagation(self.method, self.format),
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
                user = applicable_options(name, options, opts.method_options)
                for seed in opts.seeds:
                    case = Case(table, model, name, fmt, n, seed, options, calib, label, user_options=user)
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
            out.append((Case("table2", model, FP_METHOD, FP_FORMAT, 0), fp_tasks))
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
    out: Matrix = [(Case("tableA2", m, FP_METHOD, FP_FORMAT, 0), _eval_tasks(tasks)) for m in models]
    return out + _quantized("tableA2", opts, models, ("gptq", "qig-gptq"), formats, tasks)


def tableA3(opts: SuiteOptions) -> Matrix:
    """OCR calibration set at ``--samples`` and twice that (paper: 128 and 256), MBQ vs QIG, W4A8."""
    formats = opts.formats_among(("W4A8",))
    tasks = _with_fidelity(opts.ocr_tasks())
    out: Matrix = []
    for model in opts.vlm_models:
        base = opts.samples_for(model)
        for n in (base, 2 * base):
            methods = (("mbq", (), f"mbq[ocr-{n}]"), ("qig", (), f"qig[ocr-{n}]"))
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
    methods += [("qig", (("sensitivity", s),), None) for s in SENSITIVITY_ABLATION]
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
    out: Matrix = [(Case("qvlm_setting", m, FP_METHOD, FP_FORMAT, 0), _eval_tasks(tasks)) for m in opts.vlm_models]
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


def check_method_options(matrices: Sequence[Matrix], opts: SuiteOptions) -> None:
    """Fail when a user's method option applies to no case of the run (a typo, or a method that is
    not in the matrix): an option that silently does nothing is worse than an error."""
    if not opts.method_options:
        return
    from qigbench.matrix.options import SuiteOptionError

    used: set[tuple[str, str]] = set()
    for matrix in matrices:
        for case, _ in matrix:
            for key, value in case.user_options:
                used.add((key, value))
                used.add((f"{case.method}:{key}", value))
    unused = [f"{k}={v}" for k, v in opts.method_options if (k, v) not in used]
    if unused:
        methods = sorted({c.method for m in matrices for c, _ in m if not c.is_fp})
        raise SuiteOptionError(
            f"method option(s) {', '.join(unused)} apply to no configuration of this run (methods: "
            f"{', '.join(methods) or 'none'}); check the option name (`qigbench methods` lists every option) "
            "or scope it as METHOD:KEY=VALUE"
        )
