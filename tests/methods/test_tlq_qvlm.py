"""TLQ and Q-VLM through the whole engine on a real tiny VLM.

* TLQ with importance off and exposure off is the unweighted CWE search, bit for bit;
* with exposure on, every group is searched on the output of the already-quantized earlier groups
  (engine level: exactly; method level: the inputs the solver saw are those of the final block);
* the importance really changes lambda; the selection ratio keeps the top fraction;
* Q-VLM's two modes install per-channel quantizers whose ranges come from calibration, carry the
  score list across blocks, and resume identically.
"""

from __future__ import annotations

import copy

import pytest
import torch

from qigbench.engine.context import BlockContext
from qigbench.engine.method import get_method
from qigbench.engine.replay import Recorder, run_calls
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.quant import ChannelActQuantLinear, QuantLinear, parse_format
from qigbench.sensitivity.tlq_importance import TLQImportanceConfig, select_tokens, tlq_token_weights
from qigbench.tokens import TokenType, valid_mask


def _run(loader, calib_for, method: str, options: dict[str, str], fmt: str, **engine):  # type: ignore[no-untyped-def]
    loaded = loader("tiny-qwen2vl")
    batches = calib_for(loaded, n=4)
    report = calibrate(loaded.model, loaded.family, batches, get_method(method, options), parse_format(fmt),
                       EngineConfig(progress=False, **engine))
    return loaded, report


@pytest.mark.parametrize("fmt", ["W3A16", "W4A8"])
def test_tlq_without_importance_or_exposure_is_the_unweighted_search(loader, calib_for, fmt: str) -> None:  # type: ignore[no-untyped-def]
    tlq, _ = _run(loader, calib_for, "tlq", {"importance": "uniform", "exposure": "false", "n_grid": "5"}, fmt)
    awq, _ = _run(loader, calib_for, "awq", {"clip_search": "false", "loss": "mae", "n_grid": "5"}, fmt)
    ours, theirs = tlq.model.state_dict(), awq.model.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_exposure_and_importance_change_the_result(loader, calib_for) -> None:  # type: ignore[no-untyped-def]
    base = {"n_grid": "5"}
    plain, _ = _run(loader, calib_for, "tlq", {**base, "importance": "uniform", "exposure": "false"}, "W4A8")
    exposed, _ = _run(loader, calib_for, "tlq", {**base, "importance": "uniform"}, "W4A8")
    weighted, _ = _run(loader, calib_for, "tlq", {**base, "exposure": "false"}, "W4A8")
    a, b, c = (m.model.state_dict() for m in (plain, exposed, weighted))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def _block_context(loader, calib_for) -> BlockContext:  # type: ignore[no-untyped-def]
    from qigbench.engine.capture import capture_block_inputs
    from qigbench.engine.collate import unify_lengths
    from qigbench.quant import parse_format

    loaded = loader("tiny-qwen2vl")
    batches = unify_lengths(calib_for(loaded, n=4))
    blocks = loaded.model.get_submodule(loaded.family.blocks)
    captured = capture_block_inputs(loaded.model, blocks, [b.inputs for b in batches], device="cpu", offload="cpu")
    types = torch.cat([b.token_types for b in batches])
    return BlockContext(
        index=0, block=blocks[0], family=loaded.family, fmt=parse_format("W4A8"), calls=captured.layer_calls[0],
        fp_inputs=captured.hidden, q_inputs=[h.clone() for h in captured.hidden], token_types=types,
        answer_mask=None, device="cpu", propagation="quantized",
    )


def test_exposed_group_input_is_the_output_of_the_quantized_earlier_groups(loader, calib_for) -> None:  # type: ignore[no-untyped-def]
    ctx = _block_context(loader, calib_for)
    before = ctx.group_input(ctx.group("gate_up"))
    for name in ("qkv", "o"):
        ctx.quantize_group_(ctx.group(name))
    after = ctx.group_input(ctx.group("gate_up"))
    # independently: a copy of the fp block with q/k/v/o quantized the same way, hooked at the MLP
    twin = copy.deepcopy(ctx.block)
    with Recorder({"mlp": twin.get_submodule("mlp")}) as rec:
        run_calls(twin, ctx.calls, ctx.q_inputs, "cpu")  # type: ignore[arg-type]
    expected = torch.cat([c.input() for c in rec.calls["mlp"]])
    assert isinstance(twin.get_submodule("self_attn.o_proj"), QuantLinear)
    assert torch.equal(after, expected)
    assert not torch.equal(before, after)  # the exposure is real: the quantized attention changed it


def test_tlq_searches_each_group_on_the_final_quantized_path(loader, calib_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import qigbench.bases.equalization as cwe

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = cwe.search_scales

    def spy(x, linears, compared, fmt, **kw):  # type: ignore[no-untyped-def]
        result = real(x, linears, compared, fmt, **kw)
        seen.append((x.clone(), result.scales.clone()))
        return result

    monkeypatch.setattr(cwe, "search_scales", spy)
    loaded, _ = _run(loader, calib_for, "tlq", {"importance": "uniform", "n_grid": "5"}, "W4A8", propagation="fp")
    block = loaded.model.get_submodule(loaded.family.blocks)[0]
    groups = [g for g in loaded.family.groups if g.name in ("qkv", "gate_up")]
    # the groups led by a norm: the final block's input to them, times their scale, is what was searched
    from qigbench.engine.capture import capture_block_inputs

    batches = calib_for(loaded, n=4)
    from qigbench.engine.collate import unify_lengths

    batches = unify_lengths(batches)
    loaded_fp = loader("tiny-qwen2vl")
    captured = capture_block_inputs(loaded_fp.model, loaded_fp.model.get_submodule(loaded_fp.family.blocks),
                                    [b.inputs for b in batches], device="cpu", offload="cpu")
    with Recorder({g.name: block.get_submodule(g.inspect) for g in groups}) as rec:
        run_calls(block, captured.layer_calls[0], captured.hidden, "cpu")
    index = {g.name: i for i, g in enumerate(loaded.family.groups)}
    for g in groups:
        x_final = torch.cat([c.input() for c in rec.calls[g.name]])
        x_seen, scales = seen[index[g.name]]
        assert torch.allclose(x_final * scales.to(x_final.dtype), x_seen, rtol=1e-4, atol=1e-5), g.name


def test_tlq_weights_follow_importance_and_selection() -> None:
    types = torch.full((2, 6), int(TokenType.TEXT))
    types[1, 4:] = int(TokenType.PAD)
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [6.0, 1.0, 1.0, 1.0, 9.0, 9.0]])
    w = tlq_token_weights(scores, types, TLQImportanceConfig()).weights
    assert torch.allclose(w.sum(-1), torch.ones(2)) and bool((w[1, 4:] == 0).all())
    assert torch.allclose(w[0], scores[0] / scores[0].sum())
    keep = select_tokens(scores, types, 0.5)  # 10 valid tokens -> the top 5, padding never
    assert int(keep.sum()) == 5 and not bool(keep[~valid_mask(types)].any())
    half = tlq_token_weights(scores, types, TLQImportanceConfig(selection=0.5)).weights
    assert bool((half[~keep] == 0).all()) and torch.allclose(half.sum(-1), torch.ones(2))
    # a sample with no selected token gets no weight at all (and no uniform fallback)
    tiny = tlq_token_weights(scores, types, TLQImportanceConfig(selection=0.1))
    assert float(tiny.weights[0].sum()) == 0.0 and float(tiny.weights[1].sum()) == pytest.approx(1.0)
    assert tiny.diagnostics["samples_without_selected_tokens"] == 1 and not tiny.diagnostics["degenerate_fallback"]


@pytest.mark.parametrize("mode", ["reference", "paper"])
def test_qvlm_installs_calibrated_per_channel_quantizers(loader, calib_for, mode: str) -> None:  # type: ignore[no-untyped-def]
    loaded, report = _run(loader, calib_for, "qvlm", {"mode": mode}, "W4A8")
    modules = [m for m in loaded.model.get_submodule(loaded.family.blocks).modules() if isinstance(m, QuantLinear)]
    assert modules and all(isinstance(m, ChannelActQuantLinear) for m in modules)
    static = [m for m in modules if m.static]
    assert static and all(bool((m.act_hi - m.act_lo > 0).any()) for m in static)
    if mode == "reference":
        assert any(not m.static for m in modules)  # o and down: dynamic at inference
        names = [n for n, _ in loaded.model.named_modules() if n.endswith("o_proj") or n.endswith("down_proj")]
        assert names
    else:
        assert len(static) == len(modules)
        carried = report.blocks[-1]["carried"]["qvlm"]
        per_block = len(report.blocks[0]["qvlm"]["scores"])
        assert len(carried["scores"]) == per_block * len(report.blocks)  # the list crosses blocks
    assert 0 < report.mean_block_error < 1


def test_qvlm_paper_mode_resumes_identically(loader, calib_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The carried score list and open segment are restored from the checkpoint: an interrupted
    run that resumes gives the same model as an uninterrupted one."""
    once, _ = _run(loader, calib_for, "qvlm", {"mode": "paper"}, "W4A8")
    loaded = loader("tiny-qwen2vl")
    batches = calib_for(loaded, n=4)
    method = get_method("qvlm", {"mode": "paper"})
    real = method.quantize_block

    def stop_at_last(ctx):  # type: ignore[no-untyped-def]
        if ctx.index == len(loaded.model.get_submodule(loaded.family.blocks)) - 1:
            raise KeyboardInterrupt
        real(ctx)

    method.quantize_block = stop_at_last  # type: ignore[method-assign]
    cfg = EngineConfig(progress=False, resume_dir=tmp_path / "resume")
    with pytest.raises(KeyboardInterrupt):
        calibrate(loaded.model, loaded.family, batches, method, parse_format("W4A8"), cfg)
    again = loader("tiny-qwen2vl")
    report = calibrate(again.model, again.family, batches, get_method("qvlm", {"mode": "paper"}),
            parse_format("W4A8"), cfg)
    assert report.resumed_from_block > 0
    a, b = once.model.state_dict(), again.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("mode", ["reference", "paper"])
def test_qvlm_saved_model_reproduces_the_in_memory_outputs(cache_dir, calib_for, tmp_path, mode: str) -> None:  # type: ignore[no-untyped-def]
    from qigbench.pipeline import QuantizeRequest, load_quantized, quantize, save_quantized

    request = QuantizeRequest("tiny-qwen2vl", "qvlm", "W4A8", options=(("mode", mode),), samples=4, max_length=64,
                              cache_dir=str(cache_dir), progress=False)
    result = quantize(request)
    save_quantized(result, tmp_path / "q")
    loaded = load_quantized(tmp_path / "q")
    inputs = calib_for(result.loaded, n=2)[0].inputs
    with torch.no_grad():
        ours = result.loaded.model(**inputs).logits
        back = loaded.model(**inputs).logits
    assert torch.allclose(ours, back, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "fmt"), [(m, f) for m in ("qvlm", "tlq") for f in ("W4A8", "W3A16g64")])
def test_seed_methods_on_a_text_only_model(cache_dir, method: str, fmt: str) -> None:  # type: ignore[no-untyped-def]
    """smollm2-135m has no vision tokens: TLQ's importance is the next-token loss's gradient over the
    text tokens, Q-VLM's ranges and entropy run over the text tokens alone. (Its hidden size 576
    is not a multiple of 128: the weight-only format uses groups of 64.)"""
    from qigbench.pipeline import QuantizeRequest, quantize

    options = (("n_grid", "5"),) if method == "tlq" else ()
    result = quantize(QuantizeRequest("smollm2-135m", method, fmt, options=options, samples=2, batch_size=2,
                                      max_length=32, cache_dir=str(cache_dir), progress=False))
    assert result.report.blocks and all(0 < b["rel_error"] < 1 for b in result.report.blocks)


def test_qvlm_reference_number_is_the_leaderboards_paper_column() -> None:
    from qigbench.report.paper import paper_average

    assert paper_average("llava-v1.3-13b-sqa", "qvlm", "W4A4") == 80.78
    assert paper_average("/checkpoints/llava-v1.3-13b-sqa", "qvlm", "W4A4") == 80.78  # a converted folder
    assert paper_average("llava-v1.3-13b-sqa", "rtn", "W4A4") is None
    assert paper_average("tiny-llava", "qvlm", "W4A4") is None
