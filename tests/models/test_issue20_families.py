"""Regression corpus for issue 20, items 4, 7 and 8 (architectures as data).

Each test failed on 36cdf7a and passes after the fix:

* item 4: AWQ's clip search skipped q/k by module name, so InternLM2's fused ``wqkv`` was clipped
  whole (its q and k rows too); "never clip" now comes from the family;
* item 7: groups ran in module-definition order, so a block defining ``o_proj`` before its q/k/v
  (Phi-3) had GPTQ solve "o" before "qkv"; they now run in data-flow order;
* item 8: a family could not name a slice of a fused linear, so Phi-3's "o" and "down" were never
  scaled, and adding a family took five edits; a family file alone now registers everything.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from internlm2_mock import HEAD_DIM, HEADS, KV_HEADS, internvl_chat_tree, mock_batches
from torch import nn

from qigbench.engine.method import get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.models.registry import family_for, get_blocks
from qigbench.quant import QuantLinear, parse_format

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- item 4: never clip, from the family
def _awq_wqkv(clip: bool) -> torch.Tensor:
    model = internvl_chat_tree()
    method = get_method("awq", {"n_grid": "4", "clip_search": str(clip).lower()})
    calibrate(model, family_for(model), mock_batches(), method, parse_format("W3A16g8"), EngineConfig(progress=False))
    wqkv = get_blocks(model, family_for(model))[0].get_submodule("attention.wqkv")
    assert isinstance(wqkv, QuantLinear)
    return wqkv.weight.detach().clone()


def test_awq_clips_the_v_rows_of_internlm2s_fused_wqkv_but_never_its_q_and_k_rows() -> None:
    """Was: ``name.endswith(("q_proj", "k_proj"))`` let InternLM2's ``wqkv`` be clipped whole.
    The scale search is the same with and without clipping, so rows that are never clipped are the
    same round-to-nearest values either way; the v rows (one per key-value group) are clipped."""
    clipped, unclipped = _awq_wqkv(clip=True), _awq_wqkv(clip=False)
    group_rows = (HEADS // KV_HEADS + 2) * HEAD_DIM
    v = torch.zeros(clipped.shape[0], dtype=torch.bool)
    for g in range(KV_HEADS):  # [q_g | k_g | v_g]: v is the last head of each key-value group
        v[g * group_rows + group_rows - HEAD_DIM : (g + 1) * group_rows] = True
    assert torch.equal(clipped[~v], unclipped[~v]), "q/k rows of wqkv were clipped"
    assert not torch.equal(clipped[v], unclipped[v]), "the v rows of wqkv were not clipped"


def test_no_solver_or_base_decides_by_module_name() -> None:
    """What a method does to a linear comes from the family's data, never from its name."""
    names = ("q_proj", "k_proj", "v_proj", "wqkv", "qkv_proj", "o_proj", "down_proj")
    for folder in ("solvers", "bases"):
        for path in sorted((ROOT / "qigbench" / folder).glob("*.py")):
            code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
            code = code.split('"""', 2)[-1]  # past the module docstring
            assert not [n for n in names if f'"{n}"' in code or f"'{n}'" in code], path


# ---------------------------------------------------------------- item 7: data-flow order
def _o_defined_first(block: nn.Module) -> None:
    """Register the attention's o_proj before its q/k/v (as Phi-3's attention does)."""
    attn = block.self_attn
    modules = attn._modules
    attn._modules = OrderedDict([("o_proj", modules["o_proj"]), *((k, v) for k, v in modules.items() if k != "o_proj")])


def test_groups_run_in_data_flow_order_not_definition_order(load_tiny: Any, calib_for: Any) -> None:
    """Was: groups sorted by module-definition order, so GPTQ's true-sequential pass solved "o"
    (and Q-VLM scored o_proj as the block's first linear) before q/k/v had been quantized."""
    from qigbench.models.groups import block_linear_names, resolve_groups

    loaded = load_tiny("tiny-llama")
    model = copy.deepcopy(loaded.model)
    blocks = get_blocks(model, loaded.family)
    for block in blocks:
        _o_defined_first(block)
    assert next(n for n, m in blocks[0].named_modules() if isinstance(m, nn.Linear)) == "self_attn.o_proj"
    assert [g.name for g in resolve_groups(blocks[0], loaded.family)] == ["qkv", "o", "gate_up", "down"]
    assert block_linear_names(blocks[0], loaded.family)[:4] == [
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    ]  # fmt: skip

    batches = calib_for(loaded, n=2)
    report = calibrate(model, loaded.family, batches, get_method("gptq"), parse_format("W3A16g32"),
                       EngineConfig(progress=False))  # fmt: skip
    assert [list(b["groups"]) for b in report.blocks] == [["qkv", "o", "gate_up", "down"]] * len(blocks)


# ---------------------------------------------------------------- item 8: slices and the new families
def test_phi3_scales_o_and_down_through_slices_of_its_fused_linears(load_tiny: Any, calib_for: Any) -> None:
    """Was: no family could name the v rows of ``qkv_proj`` or the up half of ``gate_up_proj``, so
    Phi-3's "o" and "down" were quantized but never scaled."""
    loaded = load_tiny("tiny-phi3")
    model = copy.deepcopy(loaded.model)
    report = calibrate(model, loaded.family, calib_for(loaded, n=2), get_method("awq", {"n_grid": "4"}),
                       parse_format("W3A16g32"), EngineConfig(progress=False))  # fmt: skip
    for block in report.blocks:
        assert {"qkv", "o", "gate_up", "down"} <= {n for n, s in block["groups"].items() if "alpha" in s}
        assert block["groups"]["o"]["alpha"] >= 0 and block["groups"]["down"]["alpha"] >= 0


def test_tiny_phi4mm_runs_a_forward_with_an_image_through_the_real_processor(load_tiny: Any, prompt_batch: Any) -> None:
    """Phi-4-multimodal, transformers-native, offline: the saved processor keeps its chat template
    (transformers' Phi4MultimodalProcessor drops it on load), expands the image to its placeholder
    tokens, and the image changes what the decoder computes."""
    loaded = load_tiny("tiny-phi4mm")
    assert type(loaded.model).__name__ == "Phi4MultimodalForCausalLM"
    assert type(loaded.processor).__name__ == "Phi4MultimodalProcessor" and loaded.processor.chat_template
    batch = prompt_batch(loaded, ["Describe the image in detail."])
    image_id = loaded.model.config.vision_config.image_token_id
    assert int((batch["input_ids"] == image_id).sum()) >= 273  # 256 global + 16 + 1, plus the crop's
    with torch.no_grad():
        with_image = loaded.model(**batch).logits
        without = loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.isfinite(with_image).all() and not torch.allclose(with_image, without)


_CLONE = '''
"""A copy of the LLaMA family under another name: registered by being here, nothing else edited."""

from qigbench.models.families._llama_style import LLAMA_STYLE_GROUPS, LLAMA_STYLE_UNCLIPPED
from qigbench.models.family import ModelFamily
from qigbench.models.specimen import ModelAlias, ShapeSpec, SourceKind, TinySpecimen

FAMILY = ModelFamily(
    name="llama_clone",
    model_types=("llama_clone",),
    blocks="model.layers",
    embed_tokens="model.embed_tokens",
    groups=LLAMA_STYLE_GROUPS,
    unclipped=LLAMA_STYLE_UNCLIPPED,
    auto_class="AutoModelForCausalLM",
    multimodal=False,
    aliases=(ModelAlias("llama-clone", "llama_clone", SourceKind.HF, "someone/llama-clone"),),
    tiny=(TinySpecimen("tiny-llama-clone", build="qigbench.models.tiny.llama:build_llama"),),
    shapes=(ShapeSpec(name="llama-clone-7b", checkpoint="someone/llama-clone", builder="llama",
                      family="llama_clone", text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, vocab_size=384)),),
)
'''

_PROBE = """
import sys
from qigbench.models.aliases import ALIAS_BY_NAME
from qigbench.models.registry import family_named
from qigbench.models.shapes.data import SHAPES
from qigbench.models.tiny import TINY_BUILDERS
family = family_named("llama_clone")
assert family.model_types == ("llama_clone",)
assert ALIAS_BY_NAME["llama-clone"].source == "someone/llama-clone"
assert ALIAS_BY_NAME["tiny-llama-clone"].kind == "tiny" and ALIAS_BY_NAME["tiny-llama-clone"].family == "llama_clone"
assert TINY_BUILDERS["tiny-llama-clone"] == "qigbench.models.tiny.llama:build_llama"
assert SHAPES["llama-clone-7b"].family == "llama_clone" and "shape:llama-clone-7b" in ALIAS_BY_NAME
import qigbench
assert qigbench.__file__.startswith(sys.argv[1]), qigbench.__file__  # the copy, not the checkout
print("registered")
"""


def test_a_family_file_alone_registers_the_family_its_aliases_tiny_specimen_and_shapes(tmp_path: Path) -> None:
    """Was: a family took two new files and three edited registrations (registry FAMILIES, the tiny
    builders, the alias table, plus the shapes table). Now one file under qigbench/models/families/
    is the whole family: a copy of the package with one new file, and nothing else, knows it."""
    shutil.copytree(ROOT / "qigbench", tmp_path / "qigbench", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "qigbench" / "models" / "families" / "llama_clone.py").write_text(textwrap.dedent(_CLONE))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path)], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, check=False)  # fmt: skip
    assert out.returncode == 0 and "registered" in out.stdout, out.stderr[-3000:]


def test_the_every_family_tests_cover_the_fused_families() -> None:
    """Was: the every-family tests failed (2) as soon as a fused family was added."""
    from qigbench.models.aliases import ALIASES, SourceKind
    from qigbench.models.registry import family_named

    fused = {a.name for a in ALIASES if a.kind is SourceKind.TINY and family_named(a.family).fused}
    assert {"tiny-phi3", "tiny-phi4mm"} <= fused
    phi4 = family_named("phi4_multimodal")
    assert phi4.multimodal and phi4.groups == family_named("phi3").groups  # the same fused decoder
    assert dataclasses.replace(phi4, name="x").fused == family_named("phi3").fused
