"""Write a quantized model as a compressed-tensors checkpoint (what vLLM and transformers read).

The compressed-tensors library does the work: :func:`ct_scheme` maps our format to its
``QuantizationScheme``, ``apply_quantization_config`` attaches it to exactly the linears the method
quantized (everything else, the vision tower and ``lm_head`` included, stays as the method left it
and is listed under ``ignore``), our recovered scales / zero points are installed as its
``weight_scale`` / ``weight_zero_point``, and ``ModelCompressor`` packs and writes the config.

Code conventions differ: compressed-tensors stores signed codes (``q - 2^(b-1)`` for our unsigned
asymmetric codes) and a signed zero point; the dequantized value ``s (q - z)`` is the same. Scales
are written in float32 so that dequantization reproduces float32 fake-quant weights bit for bit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qigbench.quant import Granularity, QuantFormat, QuantLinear, QuantSpec, set_submodule
from qigbench.quant.codes import recover_codes

log = logging.getLogger(__name__)
FORMAT_NAME = "compressed-tensors"


def ct_args(spec: QuantSpec, *, activation: bool = False) -> Any:
    from compressed_tensors.quantization import QuantizationArgs, QuantizationStrategy, QuantizationType

    if activation:  # ours: symmetric, dynamic, per token
        return QuantizationArgs(num_bits=spec.bits, type=QuantizationType.INT, symmetric=True,
                                strategy=QuantizationStrategy.TOKEN, dynamic=True)
    grouped = spec.granularity is Granularity.PER_GROUP
    return QuantizationArgs(
        num_bits=spec.bits,
        type=QuantizationType.INT,
        symmetric=spec.symmetric,
        strategy=QuantizationStrategy.GROUP if grouped else QuantizationStrategy.CHANNEL,
        group_size=spec.group_size if grouped else None,
        dynamic=False,
    )


def ct_scheme(fmt: QuantFormat) -> Any:
    """Our format as a compressed-tensors scheme targeting every ``Linear`` (minus ``ignore``)."""
    from compressed_tensors.quantization import QuantizationScheme

    return QuantizationScheme(
        targets=["Linear"],
        weights=ct_args(fmt.weight),
        input_activations=None if fmt.activation is None else ct_args(fmt.activation, activation=True),
    )


def ct_config(fmt: QuantFormat, ignore: list[str]) -> Any:
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus

    return QuantizationConfig(
        config_groups={"group_0": ct_scheme(fmt)},
        ignore=ignore,
        quantization_status=QuantizationStatus.FROZEN,
    )


def _exact(name: str) -> str:
    return "re:^" + re.escape(name) + "$"


def save_compressed(model: nn.Module, fmt: QuantFormat, out: Path, save: Any) -> dict[str, Any]:
    """Pack every QuantLinear of ``model`` and write the checkpoint with ``save(model, out)``.

    The model is restored afterwards (same QuantLinear objects, same weights). Returns a summary
    for the record: which modules were packed and the layout written.
    """
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import apply_quantization_config

    qlinears = {n: m for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    plain_linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    params = {name: ct_qparams(q.weight.data, fmt, name) for name, q in qlinears.items()}
    swapped = _swap_to_linears(model, qlinears)
    compressor = None
    try:
        config = ct_config(fmt, ignore=[_exact(n) for n in plain_linears])
        apply_quantization_config(model, config, show_progress=False)
        for name, (scale, zero) in params.items():
            module = model.get_submodule(name)
            module.weight_scale = nn.Parameter(scale, requires_grad=False)
            if zero is not None:
                module.weight_zero_point = nn.Parameter(zero, requires_grad=False)
            elif hasattr(module, "weight_zero_point"):
                del module.weight_zero_point
        # sub-8-bit codes are packed into int32 also when activations are quantized (W4A8): left to
        # itself compressed-tensors would store them one per int8 ("int-quantized") and warns, once per
        # module, that the override "may fail" (the tests decompress every layout and compare)
        from loguru import logger

        logger.disable("compressed_tensors")
        try:
            compressor = ModelCompressor.from_pretrained_model(
                model, quantization_format="pack-quantized" if fmt.w_bits < 8 else None
            )
        finally:
            logger.enable("compressed_tensors")
        compressor.compress_model(model)
        save(model, out)
        compressor.update_config(str(out))
        written = getattr(compressor.quantization_config, "format", "?")
        layout = str(getattr(written, "value", written))
        dequantize_on_load = needs_dequantize_on_load(fmt)
        if dequantize_on_load:
            mark_dequantize_on_load(out)
        elif not fmt.weight.symmetric:
            log.warning(ASYMMETRIC_ACTIVATION_NOTE.format(fmt=fmt.name))
    finally:
        if compressor is not None:
            compressor.remove_decompression_hook(model)
        for name, qlinear in swapped.items():
            set_submodule(model, name, qlinear)
    return {"export": FORMAT_NAME, "layout": layout, "packed_modules": sorted(qlinears),
            "dequantize_on_load": dequantize_on_load}


def needs_dequantize_on_load(fmt: QuantFormat) -> bool:
    """Whether plain ``from_pretrained(dir)`` must dequantize while loading: an asymmetric weight grid.

    transformers 5.23 loads a compressed-tensors checkpoint by building the compressed layout on the
    meta device first (``compress_model``), then copying the file's tensors in. compressed-tensors
    0.20 packs the zero point of an asymmetric grid eight (or 32/bits) rows to an int32 when it
    writes, but its meta-device path leaves the zero point placeholder unpacked, so every
    ``weight_zero_point`` is a size mismatch (``RuntimeError: You set ignore_mismatched_sizes to
    False``; upstream: vllm-project/llm-compressor#1618). Dequantizing on load takes the other
    route, which reads the packed zero point correctly, and for a weight-only format the dequantized
    model *is* the fake-quant model. With quantized activations it is not (dequantizing drops them),
    so an asymmetric weight-activation format is left unmarked: see :data:`ASYMMETRIC_ACTIVATION_NOTE`.
    """
    return not fmt.weight.symmetric and fmt.weight_only


#: what a user is told when a checkpoint cannot load through plain ``from_pretrained(dir)``
ASYMMETRIC_ACTIVATION_NOTE = (
    "{fmt}: plain transformers cannot load this checkpoint (compressed-tensors 0.20 packs an asymmetric zero "
    "point that its own compressed-on-load path does not expect: vllm-project/llm-compressor#1618), and "
    "dequantizing on load would drop the activation quantization. Load it with "
    "qigbench.pipeline.load_quantized(DIR) (exact: weights and per-token activation quantization), or "
    "AutoModelForCausalLM.from_pretrained(DIR, quantization_config=CompressedTensorsConfig(dequantize=True)) "
    "for the dequantized weights with float activations; vLLM reads it as it is."
)


def mark_dequantize_on_load(out: Path) -> None:
    """Write ``"dequantize": true`` into the checkpoint's ``quantization_config``.

    transformers' ``CompressedTensorsConfig`` takes it from config.json as its own load option
    (``from_pretrained(dir)`` then dequantizes, with no extra argument); compressed-tensors'
    ``QuantizationConfig`` (what vLLM and llm-compressor parse) ignores keys it does not know, so
    they still read the packed weights as before.
    """
    import json

    path = out / "config.json"
    config = json.loads(path.read_text())
    config["quantization_config"]["dequantize"] = True
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def ct_qparams(w_hat: torch.Tensor, fmt: QuantFormat, name: str = "weight") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scale ``[out, n_groups]`` (float32) and signed int8 zero point in compressed-tensors' layout."""
    qt = recover_codes(w_hat, fmt.weight, name=name)
    rows = w_hat.shape[0]
    scale = qt.scale.reshape(rows, -1).float().contiguous()
    if qt.zero is None:
        return scale, None
    offset = 2 ** (fmt.weight.bits - 1)
    zero = (qt.zero.reshape(rows, -1) - offset).to(torch.int8).contiguous()
    return scale, zero


def pack_weight(w_hat: torch.Tensor, fmt: QuantFormat, layout: str = "pack-quantized") -> dict[str, torch.Tensor]:
    """One weight through compressed-tensors' own compressor: the tensors a checkpoint stores."""
    from compressed_tensors.compressors import BaseCompressor

    scale, zero = ct_qparams(w_hat, fmt)
    state = {"weight": w_hat, "weight_scale": scale}
    if zero is not None:
        state["weight_zero_point"] = zero
    return dict(BaseCompressor.get_value_from_registry(layout).compress(state, ct_scheme(fmt)))


def unpack_weight(state: dict[str, torch.Tensor], fmt: QuantFormat, layout: str = "pack-quantized") -> torch.Tensor:
    """compressed-tensors' decompression of :func:`pack_weight`'s tensors (float32 weight)."""
    from compressed_tensors.compressors import BaseCompressor

    out = BaseCompressor.get_value_from_registry(layout).decompress(dict(state), ct_scheme(fmt))
    return out["weight"]


def _swap_to_linears(model: nn.Module, qlinears: dict[str, QuantLinear]) -> dict[str, QuantLinear]:
    for name, module in qlinears.items():
        plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                          device=module.weight.device, dtype=module.weight.dtype)
        plain.weight = nn.Parameter(module.weight.data, requires_grad=False)
        if module.bias is not None:
            plain.bias = nn.Parameter(module.bias.data, requires_grad=False)
        set_submodule(model, name, plain)
    return dict(qlinears)


def is_compressed_checkpoint(directory: str | Path) -> bool:
    import json

    config = Path(directory) / "config.json"
    if not config.exists():
        return False
    qc = json.loads(config.read_text()).get("quantization_config") or {}
    return qc.get("quant_method") == "compressed-tensors"


def checkpoint_files(directory: str | Path) -> list[tuple[str, int]]:
    """``(name, bytes)`` of every file of a saved model, largest first."""
    files = [(p.name, p.stat().st_size) for p in Path(directory).iterdir() if p.is_file()]
    return sorted(files, key=lambda f: -f[1])


def weight_bytes(directory: str | Path, suffixes: Iterable[str] = (".safetensors",)) -> int:
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.suffix in tuple(suffixes))
