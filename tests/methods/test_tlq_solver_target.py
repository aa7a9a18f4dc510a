"""TLQ's A12 and A13 switches on a real tiny VLM.

* ``solver=gptq`` is the shared GPTQ with TLQ's lambda in the Hessian: with importance off it is
  plain GPTQ bit for bit (exposure on: true-sequential ``gptq``; off: ``true_sequential=false``),
  with importance on it differs;
* ``target=fp_path`` scores every candidate against the fp model's own output of the group (an
  fp forward of the untouched model, hooked independently), not the fp layer on the quantized
  input; where both coincide (fp propagation, exposure off) it changes nothing, bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from qigbench.engine.capture import capture_block_inputs
from qigbench.engine.collate import unify_lengths
from qigbench.engine.method import get_method
from qigbench.engine.replay import first_tensor, run_calls
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.errors import QigbenchError
from qigbench.quant import parse_format


def _run(loader, calib_for, method: str, options: dict[str, str], fmt: str):  # type: ignore[no-untyped-def]
    loaded = loader("tiny-qwen2vl")
    report = calibrate(loaded.model, loaded.family, calib_for(loaded, n=4), get_method(method, options),
            parse_format(fmt),
                       EngineConfig(progress=False))
    return loaded.model.state_dict(), report


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("exposure", "gptq_options"), [("false", {"true_sequential": "false"}), ("true", {})])
def test_tlq_gptq_without_importance_is_gptq(loader, calib_for, exposure: str, gptq_options) -> None:  # type: ignore[no-untyped-def]
    ours, _ = _run(loader, calib_for, "tlq", {"solver": "gptq", "importance": "uniform", "exposure": exposure}, "W4A8")
    gptq, _ = _run(loader, calib_for, "gptq", gptq_options, "W4A8")
    assert _equal(ours, gptq)


def test_tlq_gptq_importance_changes_the_hessian(loader, calib_for) -> None:  # type: ignore[no-untyped-def]
    ours, report = _run(loader, calib_for, "tlq", {"solver": "gptq"}, "W3A16")
    gptq, _ = _run(loader, calib_for, "gptq", {}, "W3A16")
    assert not _equal(ours, gptq)
    assert report.token_weights  # lambda was really used (and is reported) per block
    assert all(0 < b["rel_error"] < 1 for b in report.blocks)


def test_fp_path_target_is_the_fp_models_own_output(loader, calib_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import qigbench.bases.equalization as cwe

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # (target, fp layer on the searched input)
    real = cwe.search_scales

    def spy(x, linears, compared, fmt, **kw):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            seen.append((kw["target"].clone(), first_tensor(compared(x)).clone()))
        return real(x, linears, compared, fmt, **kw)

    monkeypatch.setattr(cwe, "search_scales", spy)
    opts = {"importance": "uniform", "n_grid": "4", "target": "fp_path"}
    _, report = _run(loader, calib_for, "tlq", opts, "W4A8")  # quantized propagation, exposure on
    assert all(0 < b["rel_error"] < 1 for b in report.blocks)

    # independently: the untouched fp model, each block's inspected modules hooked
    fp = loader("tiny-qwen2vl")
    blocks = fp.model.get_submodule(fp.family.blocks)
    batches = unify_lengths(calib_for(fp, n=4))
    captured = capture_block_inputs(fp.model, blocks, [b.inputs for b in batches], device="cpu", offload="cpu")
    hidden, expected = captured.hidden, []
    for i, block in enumerate(blocks):
        outs: dict[str, list[torch.Tensor]] = {g.name: [] for g in fp.family.groups}
        handles = [block.get_submodule(g.inspect).register_forward_hook(
            lambda m, a, out, got=outs[g.name]: got.append(first_tensor(out))) for g in fp.family.groups]
        with torch.no_grad():
            hidden = run_calls(block, captured.layer_calls[i], hidden, "cpu")
        for h in handles:
            h.remove()
        expected += [torch.cat(outs[g.name]) for g in fp.family.groups]
    assert len(seen) == len(expected)
    for (target, _), want in zip(seen, expected, strict=True):
        assert torch.allclose(target, want, rtol=1e-4, atol=1e-5)
    # block 0's first group reads the model's input on both paths; every later group does not
    assert torch.allclose(seen[0][0], seen[0][1], rtol=1e-4, atol=1e-5)
    assert all(not torch.allclose(t, s, rtol=1e-3, atol=1e-4) for t, s in seen[1:])


def test_fp_path_target_changes_the_search(loader, calib_for) -> None:  # type: ignore[no-untyped-def]
    base = {"importance": "uniform", "n_grid": "4"}
    # W3A16 runs the fp propagation: without exposure the searched input is X^fp, so the targets agree
    same, _ = _run(loader, calib_for, "tlq", {**base, "exposure": "false"}, "W3A16")
    fp_path, _ = _run(loader, calib_for, "tlq", {**base, "exposure": "false", "target": "fp_path"}, "W3A16")
    assert _equal(same, fp_path)
    for fmt in ("W3A16", "W4A8"):
        a, _ = _run(loader, calib_for, "tlq", base, fmt)
        b, report = _run(loader, calib_for, "tlq", {**base, "target": "fp_path"}, fmt)
        assert not _equal(a, b), fmt
        assert all(0 < blk["rel_error"] < 1 for blk in report.blocks), fmt


@pytest.mark.parametrize(("options", "named"), [
    ({"solver": "adam"}, ("cwe", "gptq")),
    ({"target": "fp"}, ("same_input", "fp_path")),
    ({"solver": "gptq", "target": "fp_path"}, ("solver=cwe",)),
    ({"solver": "gptq", "clip_search": "true"}, ("solver=cwe",)),
])
def test_tlq_bad_solver_or_target_names_the_choices(options: dict[str, str], named: tuple[str, ...]) -> None:
    with pytest.raises(QigbenchError) as err:
        get_method("tlq", options)
    assert all(word in str(err.value) for word in named)


@pytest.mark.parametrize(
    ("options", "named"),
    [({"solver": "gptq", "n_grid": "5"}, "n_grid"), ({"solver": "gptq", "loss": "mse"}, "loss"),
     ({"damp": "0.02"}, "damp"), ({"block_size": "64"}, "block_size")],
)
def test_options_of_the_other_solver_are_an_error_not_ignored(options: dict[str, str], named: str) -> None:
    from qigbench.engine.method import get_method
    from qigbench.errors import QigbenchError

    with pytest.raises(QigbenchError, match=named):
        get_method("tlq", options)
