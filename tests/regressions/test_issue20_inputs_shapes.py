"""Issue 20 item 6: a malformed ``shape:`` spelling is refused with the grammar, never read as a default.

``shape:qwen2vl-7b@`` (a trailing ``@``) used to build the full-width default (108 s);
``@2_0`` read as 20 blocks (Python's ``int`` takes underscores), a repeated key silently won, and
``+vision=`` on a language-only shape was dropped without a word.
"""

from __future__ import annotations

import pytest

from qigbench.models.errors import ShapeError
from qigbench.models.shapes.alias import parse_shape_alias

GRAMMAR = "shape:NAME[@LAYERS[+vision=N][+width=D]]"

MALFORMED = {
    "shape:qwen2vl-7b@": "nothing after '@'",
    "shape:qwen2vl-7b@+vision=1": "LAYERS",
    "shape:qwen2vl-7b@2+": "empty part",
    "shape:qwen2vl-7b@2++width=2": "empty part",
    "shape:qwen2vl-7b@2+width=": "width= must be a whole number",
    "shape:qwen2vl-7b@2+vision": "unknown part 'vision'",
    "shape:qwen2vl-7b@2+depth=3": "unknown part 'depth=3'",
    "shape:qwen2vl-7b@2+Width=2": "unknown part 'Width=2'",
    "shape:qwen2vl-7b@2+vision=1+vision=2": "vision= is given twice",
    "shape:qwen2vl-7b@0": "whole number >= 1, got '0'",
    "shape:qwen2vl-7b@-1": "whole number >= 1, got '-1'",
    "shape:qwen2vl-7b@2_0": "got '2_0'",
    "shape:qwen2vl-7b@ 2": "got ' 2'",
    "shape:qwen2vl-7b@+2": "LAYERS",
    "shape:qwen2vl-7b@\uff12": "LAYERS",  # a full-width digit 2
    "shape:qwen2vl-7b@2+width=0": "got '0'",
    "shape:qwen2vl-7b@2+width=-2": "got '-2'",
    "shape:qwen2vl-7b@2+width=4.0": "got '4.0'",
    "shape:qwen2vl-7b@2+vision=0": "got '0'",
    "shape:qwen2vl-7b@two": "got 'two'",
    "shape:qwen2vl-7b@2@3": "got '2@3'",
    "shape:llama2-7b@2+vision=1": "without a vision tower",
}


@pytest.mark.parametrize("spelling", sorted(MALFORMED))
def test_malformed_spellings_are_refused_with_the_grammar(spelling: str) -> None:
    with pytest.raises(ShapeError) as err:
        parse_shape_alias(spelling)
    message = str(err.value)
    assert MALFORMED[spelling] in message, message
    assert GRAMMAR in message and "e.g. shape:" in message  # shows how to spell it


@pytest.mark.parametrize(
    ("spelling", "match"),
    [
        ("shape:qwen2vl-7b@2+width=3", r"width_divisor 3 does not divide .* use one of \[1, 2, 4\]"),
        ("shape:qwen2vl-7b@29", "1 to 28"),
        ("shape:qwen2vl-7b@2+vision=33", "vision tower has 32"),
    ],
)
def test_impossible_shapes_name_the_spelling_and_the_valid_range(spelling: str, match: str) -> None:
    with pytest.raises(ShapeError, match=match) as err:
        parse_shape_alias(spelling)
    assert spelling in str(err.value)


@pytest.mark.parametrize("spelling", ["shape:", "shape:@2", "shape:qwen3vl-7b@2"])
def test_unknown_or_empty_names_list_the_real_shapes(spelling: str) -> None:
    with pytest.raises(ShapeError, match=r"known: .*qwen2vl-7b"):
        parse_shape_alias(spelling)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("shape:qwen2vl-7b", (2, None, 1)),
        ("shape:qwen2vl-7b@3", (3, None, 1)),
        ("shape:qwen2vl-7b@4+vision=1+width=4", (4, 1, 4)),
        ("shape:qwen2vl-7b@4+width=4+vision=1", (4, 1, 4)),
        ("shape:llama2-7b@1+width=8", (1, None, 8)),
    ],
)
def test_well_formed_spellings_still_parse(spelling: str, expected: tuple[int, int | None, int]) -> None:
    request = parse_shape_alias(spelling)
    assert (request.layers, request.vision_layers, request.width_divisor) == expected


def test_the_command_line_refuses_a_trailing_at_before_building(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: ``qigbench cost --model shape:qwen2vl-7b@`` built the full-width 2-block model (108 s)."""
    import qigbench.models.shapes.build as build
    from qigbench.cli import main

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("built a model for a malformed spelling")

    monkeypatch.setattr(build, "build_into", no_build)
    assert main(["cost", "--model", "shape:qwen2vl-7b@", "--method", "rtn"]) == 2
    assert "nothing after '@'" in capsys.readouterr().err
