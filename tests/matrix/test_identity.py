"""One configuration identity: ``qigbench quantize`` and the suites hash the same payload for the
same model / method / options / format / calibration, and the suites' hashes are the stored ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qigbench.matrix.cases import TABLES, Case
from qigbench.matrix.options import SuiteOptions
from qigbench.matrix.session import SuiteSession
from qigbench.pipeline import QuantizeRequest
from qigbench.results.identity import ConfigIdentity
from qigbench.results.row import config_hash

ROOT = Path(__file__).resolve().parents[2]


def _request(case: Case, **changes: object) -> QuantizeRequest:
    fields: dict[str, object] = dict(model=case.model, method=case.method, format=case.format, options=case.options,
                                     samples=case.samples, seed=case.seed)
    return QuantizeRequest(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("table", ["table2", "table5", "table1", "tableA1", "tlq_ablation", "qvlm_setting"])
def test_quantize_gives_the_hash_the_suites_store(table: str) -> None:
    options = SuiteOptions(methods=("rtn", "awq", "mbq", "qig", "qvlm", "tlq", "gptq", "qig-gptq"))
    cases = [c for c, _ in TABLES[table](options) if not c.is_fp]
    assert cases
    for case in cases:
        request = _request(case, format=case.format.lower(), batch_size=2, device="cpu", progress=False,
                           memory_budget="1GiB", propagation="auto")
        assert request.config_hash() == case.config_hash(), case.ident()
        assert request.identity().payload() == case.fingerprint()


def test_suite_session_requests_carry_the_case_identity(tmp_path: Path) -> None:
    options = SuiteOptions(db=str(tmp_path / "r.db"), cache_dir=str(tmp_path))
    session = SuiteSession(options)
    ocr = next(c for c, _ in TABLES["tableA3"](options) if not c.is_fp)
    try:
        for case in (Case("t", "tiny-qwen2vl", "qig", "W4A8", 16, 1, (("qig.steps", "4"),)), ocr):
            assert session.request(case).config_hash() == case.config_hash(), case.ident()
        assert ocr.calib == "ocr" and session.request(ocr).calib is not None
    finally:
        session.close()


def test_suite_hashes_are_the_baselines() -> None:
    """The identity reproduces the CI baseline's keys (the CI suites run with ``--limit 10``)."""
    baseline = json.loads((ROOT / "reports/baseline/baseline.json").read_text())
    stored = {(e["model"], e["method"], e["format"], e["config_hash"]) for e in baseline["entries"]}
    options = SuiteOptions(methods=("rtn", "awq", "mbq", "qig", "qvlm", "tlq"), formats=("W3A16", "W4A8"), limit=10)
    ours = {(c.model, c.stored_method, c.format, c.config_hash()) for c, _ in TABLES["table2"](options)}
    assert ours <= stored


def test_what_changes_the_model_changes_the_hash_and_nothing_else_does(tmp_path: Path) -> None:
    case = Case("t", "tiny-qwen2vl", "awq", "W4A8", 16)
    base = _request(case).config_hash()
    assert base == case.config_hash()
    # seed: its own key column; where and how it runs: not the configuration
    same = [_request(case, seed=3), _request(case, batch_size=1, device="cpu", dtype="float32", memory_budget="1GiB"),
            _request(case, propagation="quantized")]  # what auto picks for W4A8
    assert all(r.config_hash() == base for r in same)
    calib = tmp_path / "caption.json"
    calib.write_text("[]")
    changed = [_request(case, propagation="fp"), _request(case, max_length=64), _request(case, samples=8),
               _request(case, options=(("n_grid", "10"),)), _request(case, calib=str(calib)),
               _request(case, format="W3A16")]
    hashes = [r.config_hash() for r in changed]
    assert base not in hashes and len(set(hashes)) == len(hashes)
    assert _request(case, calib=str(calib)).identity().calibration.startswith("sha256:")  # type: ignore[union-attr]
    # a file is named by its content, not its path
    copy = tmp_path / "elsewhere" / "caption.json"
    copy.parent.mkdir()
    copy.write_text("[]")
    assert _request(case, calib=str(copy)).config_hash() == _request(case, calib=str(calib)).config_hash()
    # resuming checks the seed too
    assert _request(case).fingerprint() != _request(case, seed=3).fingerprint()


def test_fp_identity_is_the_unquantized_payload() -> None:
    fp = Case("table2", "tiny-qwen2vl", "fp16", "FP16", 0)
    assert fp.config_hash() == ConfigIdentity.fp("tiny-qwen2vl").hash()
    assert fp.config_hash() == config_hash({"model": "tiny-qwen2vl", "method": "fp16"}, {"calibration": None})
