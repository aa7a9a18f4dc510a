"""Quantize a model end to end: load it, build its calibration set, run a method, save the result.

This is what ``qigbench quantize``, ``qigbench run`` and the suites call; everything it does is
described by a :class:`QuantizeRequest`, so the same request always names the same run: its
:meth:`QuantizeRequest.identity` (:mod:`qigbench.results.identity`, the same the suites hash) keys
resume directories, the record's ``config_hash`` and the results store.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.device import check_device
from qigbench.engine.method import Method, get_method
from qigbench.engine.restore import quantized_linear_names
from qigbench.engine.run import CalibrationReport, EngineConfig, calibrate
from qigbench.errors import QigbenchError, check_positive
from qigbench.memory import parse_bytes
from qigbench.models.loading import LoadedModel, load_model
from qigbench.models.registry import get_blocks
from qigbench.quant import (
    QuantFormat,
    QuantLinear,
    parse_format,
    quant_linear_from_state,
    quantizer_state,
    set_submodule,
)
from qigbench.results.identity import DEFAULT_CALIBRATION, ConfigIdentity

RECORD_NAME = "qigbench_quantization.json"
#: activation-quantizer state that a plain checkpoint cannot carry (per-channel static ranges)
QUANTIZERS_NAME = "qigbench_quantizers.safetensors"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class QuantizeRequest:
    model: str
    method: str
    format: str
    options: tuple[tuple[str, str], ...] = ()
    calib: str | None = None
    #: the identity's name for ``calib`` when it is a built-in set (the suites' ``"ocr"``); None: a
    #: user file is named by its content, no ``calib`` is the model's default set
    calib_name: str | None = None
    samples: int = 128
    seed: int = 0
    batch_size: int = 4
    max_length: int | None = None
    device: str = "cpu"
    dtype: str = "auto"  # float32 on CPU, bfloat16 on CUDA
    trust_remote_code: bool = False
    cache_dir: str | None = None
    resume_dir: str | None = None
    propagation: Literal["auto", "fp", "quantized"] = "auto"
    progress: bool = True
    #: e.g. "8GiB": bytes a streamed chunk may take (None: a safe share of free memory); not in the fingerprint
    memory_budget: str | None = None

    def validate(self) -> None:
        """Fail on bad input before anything loads (format, sizes, device)."""
        _ = self.quant_format  # parsed (and kept) here: a bad format fails before anything loads
        for name, value in (("--samples", self.samples), ("--batch-size", self.batch_size),
                            ("--max-length", self.max_length)):
            check_positive(name, value)
        check_device(self.device)
        self.torch_dtype()

    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if torch.device(self.device).type == "cuda" else torch.float32
        if self.dtype not in DTYPES:
            raise QigbenchError(f"unknown dtype {self.dtype!r}; use one of auto, {', '.join(DTYPES)}")
        return DTYPES[self.dtype]

    @functools.cached_property
    def quant_format(self) -> QuantFormat:
        """The format, parsed once here at the edge (a bad string names valid examples); what the
        engine, the solvers and the export get."""
        return parse_format(self.format)

    def calibration_name(self) -> str:
        """How the identity names the calibration set (see :mod:`qigbench.results.identity`)."""
        if self.calib_name is not None:
            return self.calib_name
        if self.calib is None:
            return DEFAULT_CALIBRATION
        from qigbench.cache import file_sha256
        from qigbench.data.loader import resolve_source

        path, _ = resolve_source(self.calib, "auto")
        return f"sha256:{file_sha256(path)}"

    def identity(self, method: Method[Any] | None = None) -> ConfigIdentity:
        """What identifies the result (not where it runs or how it reports progress): the same
        identity, and so the same ``config_hash``, the suites give this configuration."""
        method = method if method is not None else get_method(self.method, dict(self.options))
        fmt = self.quant_format
        # a method whose paper propagates otherwise than the format's rule (GPTQ: quantized in every
        # format) records it: the payload leaves out only what the format alone would choose
        chosen = EngineConfig(propagation=self.propagation).resolve_propagation(fmt, method.propagation)
        automatic = EngineConfig().resolve_propagation(fmt)
        return ConfigIdentity(
            model=self.model,
            method=self.method,
            format=fmt.name,
            options=self.options,
            config=method.describe()["config"],
            samples=self.samples,
            calibration=self.calibration_name(),
            max_length=self.max_length,
            propagation=None if chosen == automatic else chosen,
        )

    def label(self, method: Method[Any] | None = None) -> str:
        """The name this configuration is recorded and shown under (``qig``, ``qig[steps=4]``)."""
        return (method if method is not None else get_method(self.method, dict(self.options))).label()

    def fingerprint(self) -> dict[str, Any]:
        """What a resume directory must match: the identity plus the seed."""
        return self.identity().resume_fingerprint(self.seed)

    def config_hash(self) -> str:
        return self.identity().hash()


@dataclass
class QuantizeResult:
    loaded: LoadedModel
    report: CalibrationReport
    request: QuantizeRequest
    calibration: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        from qigbench.results.environment import environment_info

        identity = self.request.identity()
        return {
            "request": asdict(self.request),
            # the hash the suites store for this configuration, and what it is computed from
            "config_hash": identity.hash(),
            "identity": {**identity.payload(), **identity.calibration_payload()},
            # what tables, plots and heatmaps call this configuration (results.identity.variant_label)
            "label": self.request.label(),
            "model_source": self.loaded.source,
            "family": self.loaded.family.name,
            "method": self.report.method,
            "format": self.report.format,
            "propagation": self.report.propagation,
            "calibration": self.calibration,
            "seconds": self.report.seconds,
            "resumed_seconds": self.report.resumed_seconds,
            "resumed_from_block": self.report.resumed_from_block,
            "peak_memory_bytes": self.report.peak_memory_bytes,
            "mean_block_error": self.report.mean_block_error,
            "blocks": self.report.blocks,
            "quantized_modules": quantized_modules(self.loaded),
            "kept_fp": [{"path": k.path, "reason": k.reason} for k in self.loaded.family.keep_fp],
            "environment": environment_info(self.request.device),
        }


def quantized_modules(loaded: LoadedModel) -> list[str]:
    blocks = get_blocks(loaded.model, loaded.family)
    return [f"{loaded.family.blocks}.{i}.{n}" for i, b in enumerate(blocks) for n in quantized_linear_names(b)]


def quantize(request: QuantizeRequest, loaded: LoadedModel | None = None) -> QuantizeResult:
    request.validate()  # fail on bad input before loading anything
    budget = parse_bytes(request.memory_budget)  # ... and a bad --memory-budget
    method = get_method(request.method, dict(request.options))
    if loaded is None:
        loaded = load_model(
            request.model,
            dtype=request.torch_dtype(),
            device="cpu",  # the engine moves one block at a time to request.device
            trust_remote_code=request.trust_remote_code,
            cache_dir=request.cache_dir,
        )
    batches, calibration = calibration_batches(request, loaded, method)
    engine = EngineConfig(
        device=request.device,
        propagation=request.propagation,
        resume_dir=Path(request.resume_dir) if request.resume_dir else None,
        progress=request.progress,
        memory_budget=budget,
    )
    fingerprint = request.identity(method).resume_fingerprint(request.seed)
    report = calibrate(loaded.model, loaded.family, batches, method, request.quant_format, engine, fingerprint)
    return QuantizeResult(loaded=loaded, report=report, request=request, calibration=calibration)


def calibration_batches(request: QuantizeRequest, loaded: LoadedModel, method: Any) -> tuple[list[Any], dict[str, Any]]:
    """The batches ``method`` calibrates on (on CPU, in the request's dtype) and where they came from."""
    if not method.needs_calibration:
        return _probe_batch(loaded), {"source": None}
    source = request.calib or default_calibration(loaded, request.cache_dir, seed=request.seed)
    calib = load_calibration(
        source,
        model=loaded,
        n_samples=request.samples,
        seed=request.seed,
        batch_size=request.batch_size,
        max_length=request.max_length,
    )
    batches = [b.to("cpu", request.torch_dtype()) for b in calib.batches]
    calibration = {"source": calib.source, "kind": calib.kind, "n_samples": calib.n_samples,
                   "seed": calib.seed, "sha256": calib.sha256}
    return batches, calibration


def _probe_batch(loaded: LoadedModel) -> list[Any]:
    """Data-free methods still run the block loop (to report errors): one short text prompt."""
    from qigbench.data.batch import CalibrationBatch
    from qigbench.tokens import TokenType

    enc = loaded.tokenizer(["The quick brown fox jumps over the lazy dog."], return_tensors="pt")
    ids = enc["input_ids"]
    mask = torch.ones_like(ids, dtype=torch.bool)
    types = torch.full_like(ids, int(TokenType.TEXT))
    return [CalibrationBatch(inputs=dict(enc), token_types=types, answer_mask=mask, labels=ids.clone())]


def write_heatmap(
    result: QuantizeResult, path: str | Path, sample: int = 0, title: str | None = None
) -> Path | None:
    """The paper's Fig. 1 for this run: lambda of one calibration sample, tokens x layers, with
    vision/text/special bands. ``None`` when the method computed no token weights."""
    from qigbench.sensitivity.heatmap import SensitivityRecorder

    report = result.report
    if not report.token_weights or report.token_types is None:
        return None
    recorder = SensitivityRecorder(sample=sample)
    for block, groups in sorted(report.token_weights.items()):
        for group, weights in groups.items():
            recorder.record(block, weights, report.token_types, group)
    title = title or f"token sensitivity: {result.request.label()} {report.format} on {result.request.model}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return recorder.save(path, title=title)


class OutputPathError(QigbenchError, ValueError):
    """An output path (``--save``, ``--heatmap``) that cannot be written."""


def _writable_ancestor(path: Path, flag: str) -> None:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # missing folders are created: the first existing one must be writable
    if not parent.is_dir():
        raise OutputPathError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
    try:  # a real probe: os.access says yes to root on read-only mounts and pseudo file systems
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise OutputPathError(
            f"{flag} {path}: cannot write into {parent} ({err.strerror or err}); choose another path"
        ) from None


def check_save_target(out_dir: str | Path, flag: str = "--save") -> Path:
    """Validate a model output folder *before* calibrating (a late failure loses the calibration).

    A new folder, an empty one, or an earlier qigbench save (replaced atomically) are accepted; an
    existing file, a folder of other files or an unwritable parent are not."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{flag} {out} is an existing file, not a folder; pass a new folder or remove the file")
    if out.is_dir() and any(out.iterdir()) and not (out / RECORD_NAME).is_file():
        raise OutputPathError(
            f"{flag} {out} is a folder with other files (no {RECORD_NAME}); pass a new or empty folder, so nothing "
            "else is overwritten"
        )
    _writable_ancestor(out, flag)
    return out


def check_file_target(path: str | Path, flag: str) -> Path:
    """Validate an output file path (e.g. ``--heatmap``) before any work is done."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise OutputPathError(f"{flag} {out} is a folder; pass a file name such as {out / 'heatmap.png'}")
    _writable_ancestor(out, flag)
    return out


def save_quantized(result: QuantizeResult, out_dir: str | Path, export: str = "compressed-tensors") -> Path:
    """Write a model loadable with ``from_pretrained`` plus the record of what was done.

    ``export`` picks the weight layout (see :mod:`qigbench.export`): ``compressed-tensors`` packs
    the integer codes (what vLLM and transformers' compressed-tensors integration read),
    ``fake-quant`` keeps float weights on the grid. :func:`load_quantized` reads both and
    re-installs the activation quantizers.

    Everything is written into a hidden sibling folder first and renamed into place, so a save
    killed half-way (SIGKILL, full disk) leaves no half-written model at ``out_dir`` — an earlier
    save there stays intact until the new one is complete."""
    out = check_save_target(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        _write_model(result, tmp, export)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_model(result: QuantizeResult, out: Path, export: str) -> None:
    from qigbench.export import write_weights

    model = result.loaded.model
    quantizers = {k: v for name, q in model.named_modules() if isinstance(q, QuantLinear)
                  for k, v in quantizer_state(q, name).items()}
    if quantizers:  # per-channel activation ranges (Q-VLM): no checkpoint layout holds them
        save_file(quantizers, str(out / QUANTIZERS_NAME))
    fmt = result.request.quant_format
    method = get_method(result.request.method, dict(result.request.options))
    fallback = export == "compressed-tensors" and not method.weights_on_format_grid(fmt)
    # weights off the integer grid (Q-VLM's NF4) have no packed layout: float weights on their grid
    export_info = write_weights(model, fmt, out, "fake-quant" if fallback else export)
    if fallback:
        export_info["note"] = f"{method.name}: weights are not on the {fmt.name} integer grid; written as fake-quant"
    for part in (result.loaded.processor, result.loaded.tokenizer):
        if part is not None:
            part.save_pretrained(out)
    write_heatmap(result, out / "sensitivity_heatmap.png")
    record = {**result.record(), "export": export_info}
    (out / RECORD_NAME).write_text(json.dumps(record, indent=1, default=str))  # last: marks it complete


def _remove_stale_partials(out: Path) -> None:
    """Hidden leftovers of saves that were killed (their process no longer runs)."""
    for leftover in out.parent.glob(f".{out.name}.partial-*"):
        pid = leftover.name.removeprefix(f".{out.name}.partial-").split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_quantized(directory: str | Path, *, device: str = "cpu", dtype: torch.dtype | None = None) -> LoadedModel:
    """Load a model written by :func:`save_quantized` (packed or fake-quant) with its QuantLinears
    back in place; packed weights are dequantized on load, bit for bit."""
    directory = Path(directory)
    record_path = directory / RECORD_NAME
    if not record_path.exists():
        raise QigbenchError(f"{directory} has no {RECORD_NAME}; is it a model saved by `qigbench quantize --save`?")
    record = json.loads(record_path.read_text())
    fmt = parse_format(record["format"])
    from qigbench.export import load_options

    with warnings.catch_warnings():  # "quantization_config passed, the model's is used": we only set dequantize
        warnings.filterwarnings("ignore", message=".*already has a `quantization_config`", category=UserWarning)
        loaded = load_model(directory, dtype=dtype or torch.float32, device=device, **load_options(directory))
    quantizers = load_file(str(directory / QUANTIZERS_NAME)) if (directory / QUANTIZERS_NAME).exists() else {}
    for name in record["quantized_modules"]:
        linear = loaded.model.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise QigbenchError(
                f"{directory}: {name} is a {type(linear).__name__}, not a linear; the record does not match the model"
            )
        state = {f"{name}.weight": linear.weight.detach()}
        if linear.bias is not None:
            state[f"{name}.bias"] = linear.bias.detach()
        state.update({k: v for k, v in quantizers.items() if k.startswith(f"{name}.act_")})
        set_submodule(loaded.model, name, quant_linear_from_state(state, name, fmt))
    return loaded
