"""Quantize a model end to end: load it, build its calibration set, run a method, save the result.

This is what ``qigbench quantize``, ``qigbench run`` and the suites call; everything it does is
described by a :class:`QuantizeRequest`, so the same request always names the same run (its
fingerprint keys resume directories and the results store).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.engine.method import config_hash, get_method
from qigbench.engine.restore import quantized_linear_names
from qigbench.engine.run import CalibrationReport, EngineConfig, calibrate
from qigbench.errors import QigbenchError
from qigbench.memory import parse_bytes
from qigbench.models.loading import LoadedModel, load_model
from qigbench.models.registry import get_blocks
from qigbench.quant import QuantLinear, parse_format, set_submodule

RECORD_NAME = "qigbench_quantization.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class QuantizeRequest:
    model: str
    method: str
    format: str
    options: tuple[tuple[str, str], ...] = ()
    calib: str | None = None
    samples: int = 128
    seed: int = 0
    batch_size: int = 4
    max_length: int | None = None
    device: str = "cpu"
    dtype: str = "auto"  # float32 on CPU, bfloat16 on CUDA
    trust_remote_code: bool = False
    cache_dir: str | None = None
    resume_dir: str | None = None
    propagation: str = "auto"
    progress: bool = True
    #: e.g. "8GiB": bytes a streamed chunk may take (None: a safe share of free memory); not in the fingerprint
    memory_budget: str | None = None

    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if torch.device(self.device).type == "cuda" else torch.float32
        if self.dtype not in DTYPES:
            raise QigbenchError(f"unknown dtype {self.dtype!r}; use one of auto, {', '.join(DTYPES)}")
        return DTYPES[self.dtype]

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the result (not where it runs or how it reports progress)."""
        keep = ("model", "method", "format", "options", "calib", "samples", "seed", "max_length", "propagation")
        return {k: v for k, v in asdict(self).items() if k in keep}

    def config_hash(self) -> str:
        return config_hash(self.fingerprint())


@dataclass
class QuantizeResult:
    loaded: LoadedModel
    report: CalibrationReport
    request: QuantizeRequest
    calibration: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        from qigbench.results.environment import environment_info

        return {
            "request": asdict(self.request),
            "config_hash": self.request.config_hash(),
            "model_source": self.loaded.source,
            "family": self.loaded.family.name,
            "method": self.report.method,
            "format": self.report.format,
            "propagation": self.report.propagation,
            "calibration": self.calibration,
            "seconds": self.report.seconds,
            "peak_memory_bytes": self.report.peak_memory_bytes,
            "mean_block_error": self.report.mean_block_error,
            "blocks": self.report.blocks,
            "quantized_modules": quantized_modules(self.loaded),
            "environment": environment_info(self.request.device),
        }


def quantized_modules(loaded: LoadedModel) -> list[str]:
    blocks = get_blocks(loaded.model, loaded.family)
    return [f"{loaded.family.blocks}.{i}.{n}" for i, b in enumerate(blocks) for n in quantized_linear_names(b)]


def quantize(request: QuantizeRequest, loaded: LoadedModel | None = None) -> QuantizeResult:
    parse_format(request.format)  # fail on a bad format before loading anything
    budget = parse_bytes(request.memory_budget)  # ... or a bad --memory-budget
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
        propagation=request.propagation,  # type: ignore[arg-type]
        resume_dir=Path(request.resume_dir) if request.resume_dir else None,
        progress=request.progress,
        memory_budget=budget,
    )
    report = calibrate(loaded.model, loaded.family, batches, method, request.format, engine, request.fingerprint())
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
    title = title or f"token sensitivity: {result.request.method} {report.format} on {result.request.model}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return recorder.save(path, title=title)


def save_quantized(result: QuantizeResult, out_dir: str | Path) -> Path:
    """Write a model loadable with ``from_pretrained`` (weights on the quantization grid) plus
    the record of what was done; :func:`load_quantized` re-installs activation quantizers."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = result.loaded.model
    swapped = _to_plain_linears(model)
    try:
        model.save_pretrained(out)  # type: ignore[operator]
    finally:
        for name, qlinear in swapped.items():
            set_submodule(model, name, qlinear)
    for part in (result.loaded.processor, result.loaded.tokenizer):
        if part is not None:
            part.save_pretrained(out)
    (out / RECORD_NAME).write_text(json.dumps(result.record(), indent=1, default=str))
    write_heatmap(result, out / "sensitivity_heatmap.png")
    return out


def _to_plain_linears(model: nn.Module) -> dict[str, QuantLinear]:
    swapped: dict[str, QuantLinear] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantLinear):
            plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            plain.weight = module.weight
            plain.bias = module.bias  # type: ignore[assignment]
            set_submodule(model, name, plain)
            swapped[name] = module
    return swapped


def load_quantized(directory: str | Path, *, device: str = "cpu", dtype: torch.dtype | None = None) -> LoadedModel:
    """Load a model written by :func:`save_quantized` with its QuantLinears back in place."""
    directory = Path(directory)
    record_path = directory / RECORD_NAME
    if not record_path.exists():
        raise QigbenchError(f"{directory} has no {RECORD_NAME}; is it a model saved by `qigbench quantize --save`?")
    record = json.loads(record_path.read_text())
    fmt = parse_format(record["format"])
    loaded = load_model(directory, dtype=dtype or torch.float32, device=device)
    for name in record["quantized_modules"]:
        linear = loaded.model.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise QigbenchError(
                f"{directory}: {name} is a {type(linear).__name__}, not a linear; the record does not match the model"
            )
        set_submodule(loaded.model, name, QuantLinear.from_linear(linear, fmt, quantized_weight=linear.weight))
    return loaded
