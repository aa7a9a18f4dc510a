"""Load any model the harness knows through the real ``from_pretrained`` of its family's Auto class.

Tiny models, the packaged SmolLM2 and the 7B checkpoints all take this one path, so what the
tests exercise on CPU is what runs on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qigbench.models.aliases import ResolvedSource, SourceKind, resolve_source
from qigbench.models.availability import record_failure, require_available
from qigbench.models.errors import ModelUnavailableError, TrustRemoteCodeError
from qigbench.models.family import ModelFamily
from qigbench.models.registry import family_for


@dataclass
class LoadedModel:
    model: nn.Module
    processor: Any | None  # the multimodal processor; None for text-only models
    tokenizer: Any
    family: ModelFamily
    source: str  # human-readable: "tiny-llama -> tiny:/home/.../tiny-llama-v1"


def load_model(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    device_map: str | dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    cache_dir: Path | str | None = None,
    quantization_config: Any | None = None,
) -> LoadedModel:
    """Load model, processor and tokenizer by alias, local folder or hub id.

    ``device_map`` (e.g. ``"auto"``) is for models larger than one device; without it the model
    is moved to ``device``. ``trust_remote_code`` stays off unless passed: a checkpoint that
    needs it fails with an error telling the user to pass ``--trust-remote-code``.
    """
    resolved = resolve_source(name_or_path, cache_dir=cache_dir)
    if resolved.alias is not None and resolved.alias.trust_remote_code and not trust_remote_code:
        raise TrustRemoteCodeError(_remote_code_message(resolved))
    if resolved.kind is SourceKind.LOCAL and (Path(resolved.location) / "config.json").is_file():
        try:  # remote code is refused first, whatever else is missing; any other config problem is
            _load_config(resolved, trust_remote_code)  # raised by the load itself, after the weights check
        except (OSError, ValueError) as err:
            if isinstance(err, TrustRemoteCodeError):
                raise
    require_available(resolved, str(name_or_path))  # not on disk and offline: say so before transformers tries
    try:
        return _load(resolved, dtype, device, device_map, trust_remote_code, quantization_config)
    except OSError as err:
        if resolved.kind is not SourceKind.HF:
            raise
        # online but the hub failed (unreachable, gated, missing files): remembered, so the next
        # request for this model fails at once instead of retrying the hub
        raise record_failure(resolved, str(name_or_path), err) from err


def _load(
    resolved: ResolvedSource,
    dtype: torch.dtype,
    device: str | torch.device,
    device_map: str | dict[str, Any] | None,
    trust_remote_code: bool,
    quantization_config: Any | None = None,
) -> LoadedModel:
    import transformers

    config = _load_config(resolved, trust_remote_code)
    family = family_for(config)
    if family.requires_trust_remote_code and not trust_remote_code:
        raise TrustRemoteCodeError(_remote_code_message(resolved))

    # the processor first: a folder without its tokenizer / processor files fails in a second, not
    # after loading the weights
    processor: Any | None = None
    try:
        if family.multimodal:
            loaded = transformers.AutoProcessor.from_pretrained(resolved.location, trust_remote_code=trust_remote_code)
            # remote-code checkpoints (InternVL2) ship no processor: AutoProcessor falls back to the tokenizer
            processor = loaded if hasattr(loaded, "tokenizer") else None
            tokenizer = loaded.tokenizer if processor is not None else loaded
            if processor is not None and getattr(processor, "chat_template", None) is None:
                # Phi4MultimodalProcessor.__init__ has no chat_template argument, so from_pretrained drops
                # the saved template: the tokenizer's (the same file) stands in
                processor.chat_template = getattr(tokenizer, "chat_template", None)
        else:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                resolved.location, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError) as err:  # a missing tokenizer is a ValueError ("cannot instantiate")
        if resolved.kind is not SourceKind.LOCAL or isinstance(err, TrustRemoteCodeError):
            raise
        raise ModelUnavailableError(_processor_message(Path(resolved.location), family.multimodal, err)) from err

    auto = getattr(transformers, family.auto_class)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if quantization_config is not None:  # e.g. how to read a packed checkpoint (qigbench.export)
        kwargs["quantization_config"] = quantization_config
    model = auto.from_pretrained(resolved.location, **kwargs)
    if device_map is None:
        model = model.to(device)
    model.eval()
    return LoadedModel(
        model=model, processor=processor, tokenizer=tokenizer, family=family, source=resolved.description
    )


#: files that make a folder's tokenizer / image processor loadable (any one of each group)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def _processor_message(folder: Path, multimodal: bool, err: Exception) -> str:
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    absent = []
    if not present & set(TOKENIZER_FILES):
        absent.append("the tokenizer (tokenizer.json, tokenizer_config.json)")
    if multimodal and not present & set(PROCESSOR_FILES):
        absent.append("the image processor (preprocessor_config.json)")
    what = "processor and tokenizer" if multimodal else "tokenizer"
    first = str(err).strip().splitlines()[0].split(". ")[0][:200] if str(err).strip() else type(err).__name__
    return (
        f"model folder {folder} has config.json and weights but its {what} cannot be loaded ({first}); "
        f"{'missing: ' + ' and '.join(absent) if absent else 'its tokenizer files are incomplete'}. Copy the "
        f"{what} files of the original checkpoint into it (model.save_pretrained(DIR) writes only the model: also "
        f"run {'AutoProcessor' if multimodal else 'AutoTokenizer'}.from_pretrained(ORIGINAL).save_pretrained(DIR))"
    )


def _load_config(resolved: ResolvedSource, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolved.location, trust_remote_code=trust_remote_code)
    except ValueError as err:
        if "trust_remote_code" in str(err) and not trust_remote_code:
            raise TrustRemoteCodeError(_remote_code_message(resolved)) from err
        raise


def _remote_code_message(resolved: ResolvedSource) -> str:
    return (
        f"{resolved.description} runs modelling code shipped with the checkpoint (remote code), which is off "
        "by default; pass --trust-remote-code (load_model(..., trust_remote_code=True)) if you trust its source"
    )
