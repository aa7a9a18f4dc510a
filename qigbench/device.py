"""Validate a compute device string before anything is loaded.

``--device cuda`` on a machine without CUDA used to fail deep inside the first ``.to(device)``
with torch's "Torch not compiled with CUDA enabled" traceback, after the model had loaded.
"""

from __future__ import annotations

from qigbench.errors import QigbenchError


class DeviceError(QigbenchError, ValueError):
    """A device string names no device this machine has."""


def check_device(device: str) -> str:
    """Return ``device`` unchanged when this machine has it; else raise :class:`DeviceError`."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"--device {device!r} is not a device; use cpu, cuda, cuda:1 or mps ({err})") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "torch is built with CUDA but sees no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
                if torch.backends.cuda.is_built()
                else f"torch {torch.__version__} is a CPU-only build (install a CUDA build of torch)"
            )
            raise DeviceError(f"--device {device} asks for CUDA, but {why}; or run with --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    return device

