"""Saved artefacts of a quantized model: which weight layout is written, and how to read it back.

* ``compressed-tensors`` (default): packed integer codes, scales and zero points with a
  ``quantization_config``, written by the compressed-tensors library (vLLM, transformers);
* ``fake-quant``: float weights on the grid (as large as the float model).

Both are bit-exact: the packed weights dequantize to the fake-quant weights the method produced.
A GPTQ-runtime layout (qweight / qzeros / g_idx) is not written: see docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from qigbench.errors import QigbenchError
from qigbench.quant import QuantFormat

EXPORTS = ("compressed-tensors", "fake-quant")


def _save_pretrained(model: nn.Module, out: Path) -> None:
    model.save_pretrained(out)  # type: ignore[operator]


def write_weights(model: nn.Module, fmt: QuantFormat, out: Path, export: str) -> dict[str, Any]:
    """Write ``model``'s config and weights into ``out`` in the ``export`` layout; the in-memory
    model is left as it was. Returns what the record should say about the layout."""
    if export == "compressed-tensors":
        _require_compressed_tensors()
        from qigbench.export.compressed import save_compressed

        return save_compressed(model, fmt, out, _save_pretrained)
    if export == "fake-quant":
        from qigbench.export.fake import save_fake_quant

        return save_fake_quant(model, out, _save_pretrained)
    raise QigbenchError(f"unknown export layout {export!r}; use one of {', '.join(EXPORTS)}")


def load_options(directory: str | Path) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments a saved checkpoint needs.

    Packed checkpoints are dequantized while loading (``dequantize=True``) and our quantizers are
    re-installed afterwards, which reproduces the fake-quant model exactly for every format. (Plain
    ``from_pretrained(dir)`` needs no argument: asymmetric weight-only checkpoints carry
    ``"dequantize": true`` themselves, see :func:`qigbench.export.compressed.needs_dequantize_on_load`.)
    """
    from qigbench.export.compressed import is_compressed_checkpoint

    if not is_compressed_checkpoint(directory):
        return {}
    _require_compressed_tensors()
    from transformers import CompressedTensorsConfig

    return {"quantization_config": CompressedTensorsConfig(dequantize=True)}


def _require_compressed_tensors() -> None:
    try:
        import compressed_tensors  # noqa: F401
    except ImportError as err:
        raise QigbenchError(
            "the compressed-tensors layout needs the compressed-tensors library: pip install 'qigbench[export]' "
            "(or save with --export fake-quant)"
        ) from err
