"""One cache root and one atomic builder, honoured by every builder (tiny, random, shape, SmolLM2, data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qigbench.cache import CACHE_ENV, atomic_build, cache_root
from qigbench.data import default_calibration
from qigbench.models import smollm2
from qigbench.models.aliases import ALIASES, SourceKind, resolve_source
from qigbench.models.random_llama import RandomLlamaSpec, ensure_random_llama
from qigbench.models.shapes import build as shape_build
from qigbench.models.shapes import shape_model_dir
from qigbench.models.tiny import ensure_tiny
from qigbench.models.tiny.common import MARKER


def test_root_is_the_argument_then_the_env_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_root() == Path.home() / ".cache" / "qigbench"  # unchanged: existing caches keep working


def test_interrupted_build_leaves_nothing(tmp_path: Path) -> None:
    def crash(out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_build(tmp_path / "tiny" / "x", crash, marker=MARKER)
    assert list((tmp_path / "tiny").iterdir()) == []


def test_a_complete_entry_is_reused_and_a_folder_without_its_marker_is_rebuilt(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "done").write_text(str(len(calls)))

    target = tmp_path / "entry"
    target.mkdir()
    (target / "stale").write_text("from a crash before builds were atomic")
    assert atomic_build(target, build, marker="done") == target
    assert sorted(p.name for p in target.iterdir()) == ["done"] and len(calls) == 1
    assert atomic_build(target, build, marker="done") == target and len(calls) == 1  # reused, not rebuilt
    assert (target / "done").read_text() == "1"
    assert oct(target.stat().st_mode & 0o777) == oct(0o755)  # reads like any folder, not mkdtemp's 0700


def test_the_loser_of_a_race_keeps_the_winners_entry(tmp_path: Path) -> None:
    target = tmp_path / "entry"

    def build_while_another_finishes(out: Path) -> None:
        (out / "done").write_text("loser")
        target.mkdir()
        (target / "done").write_text("winner")
        (target / "more").write_text("x")  # non-empty: the rename onto it fails

    assert atomic_build(target, build_while_another_finishes, marker="done") == target
    assert (target / "done").read_text() == "winner"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # the loser's temporary copy is gone


def test_every_builder_builds_under_the_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With only ``$QIGBENCH_CACHE`` set, every builder writes below it, where the alias resolves.
    The tiny, random and calibration builds are real; the shape and SmolLM2 conversions are stubbed
    (their weights are hundreds of MB) so the cache plumbing around them is what runs."""
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))

    tiny = ensure_tiny("tiny-llama")
    assert tiny.parent == root / "tiny" and (tiny / "model.safetensors").is_file()
    stamp = json.loads((tiny / MARKER).read_text())
    assert stamp["alias"] == "tiny-llama" and resolve_source("tiny-llama").location == str(tiny)

    spec = RandomLlamaSpec(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    random = ensure_random_llama(spec)
    assert random == root / "random" / spec.name and (random / MARKER).is_file()

    monkeypatch.setattr(shape_build, "build_into", lambda out, plan: (out / "config.json").write_text("{}"))
    shape = shape_model_dir("llama2-7b", 1, width_divisor=8)
    assert shape.parent == root / "shapes" and (shape / MARKER).is_file()
    assert resolve_source("shape:llama2-7b@1+width=8").location == str(shape)

    monkeypatch.setattr(smollm2, "smollm2_gguf_path", lambda: tmp_path / "stub.gguf")
    monkeypatch.setattr(smollm2, "_convert", lambda gguf, out: (out / "config.json").write_text(gguf.name))
    smol = smollm2.ensure_smollm2()
    assert smol == root / "smollm2-135m" and (smol / "config.json").read_text() == "stub.gguf"
    assert resolve_source("smollm2-135m").location == str(smol)

    calib = default_calibration("tiny-llama", n=1)
    assert calib.parent.parent == root / "calibration" and calib.is_file()

    offline = [a for a in ALIASES if a.kind is not SourceKind.HF]
    assert {a.kind for a in offline} == {SourceKind.TINY, SourceKind.SHAPE, SourceKind.PACKAGE, SourceKind.TRAINED}
    for alias in offline:  # where each would be built: below the root, without building it
        assert Path(resolve_source(alias.name, build=False).location).is_relative_to(root), alias.name
