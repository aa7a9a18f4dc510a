"""Replay: a recorded call re-run on new inputs, split per batch and repeated for stacked copies."""

from __future__ import annotations

import torch
from torch import nn

from qigbench.engine.replay import Call, Recorder, Replay, first_tensor, map_tensors, run_calls


class MaskedScale(nn.Module):
    """y = x * mask[..., None] * factor: a per-sample keyword tensor that must follow its sample."""

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor, factor: float = 1.0
    ) -> tuple[torch.Tensor, None]:
        return hidden_states * mask[..., None] * factor, None


def _record(module: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[Call]:
    with Recorder({"m": module}) as rec:
        for x, mask in batches:
            module(hidden_states=x, mask=mask, factor=2.0)
    return rec.calls["m"]


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(b, 5, 3, generator=gen), (torch.rand(b, 5, generator=gen) > 0.3).float()) for b in (2, 3)]


def test_replay_reproduces_each_batch_with_its_own_kwargs() -> None:
    module = MaskedScale()
    batches = _batches()
    replay = Replay(module, _record(module, batches))
    assert replay.batch_sizes == [2, 3] and replay.total == 5
    x = torch.cat([b[0] for b in batches])
    expected = torch.cat([x_ * m[..., None] * 2.0 for x_, m in batches])
    torch.testing.assert_close(replay(x), expected)
    torch.testing.assert_close(replay.inputs(), x)


def test_replay_of_stacked_copies_is_copy_major() -> None:
    """k copies stacked as rows j*N:(j+1)*N: each sample's mask is repeated with it."""
    module = MaskedScale()
    batches = _batches()
    replay = Replay(module, _record(module, batches))
    x = torch.cat([b[0] for b in batches])
    stacked = torch.cat([x, -x, 3 * x])
    out = replay(stacked)
    for j, factor in enumerate((1.0, -1.0, 3.0)):
        torch.testing.assert_close(out[j * 5 : (j + 1) * 5], replay(factor * x))


def test_replay_rejects_a_row_count_that_is_not_a_multiple() -> None:
    module = MaskedScale()
    replay = Replay(module, _record(module, _batches()))
    try:
        replay(torch.zeros(7, 5, 3))
    except ValueError as err:
        assert "multiple" in str(err)
    else:
        raise AssertionError("a 7-row input for a 5-sample calibration set must be refused")


def test_positional_calls_and_run_calls() -> None:
    lin = nn.Linear(3, 2)
    with Recorder({"lin": lin}) as rec:
        lin(torch.ones(1, 3))
    call = rec.calls["lin"][0]
    assert torch.equal(call.input(), torch.ones(1, 3))
    new = torch.full((1, 3), 2.0)
    (out,) = run_calls(lin, [call], [new], "cpu")
    torch.testing.assert_close(out, lin(new))


def test_helpers() -> None:
    nested = {"a": (torch.ones(1), [torch.zeros(2)]), "b": 3}
    doubled = map_tensors(nested, lambda t: t + 1)
    assert torch.equal(doubled["a"][0], torch.full((1,), 2.0)) and doubled["b"] == 3
    assert torch.equal(first_tensor((torch.ones(2), None)), torch.ones(2))
