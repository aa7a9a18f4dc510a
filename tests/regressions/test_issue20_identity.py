"""Issue 20, items 5 and 16: the configuration identity holds what was consumed and measured.

* RTN reads no calibration data, yet ``--calib`` / ``--samples`` went into its hash, so identical
  results were stored as different configurations. What a method consumes is the method's own
  declaration (``Method.needs_calibration``), not a check of its name.
* ``--limit`` (examples per task) was not in the identity, so rows of runs with different limits
  shared one key and replaced (or skipped) each other.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from qigbench.matrix.cases import TABLES, Case
from qigbench.matrix.options import SuiteOptions
from qigbench.pipeline import QuantizeRequest
from qigbench.results import ResultRow, ResultsStore
from qigbench.results.codec import row_values
from qigbench.results.schema import ROW_COLUMNS


def test_a_method_without_calibration_data_has_none_in_its_identity(tmp_path: Path) -> None:
    calib = tmp_path / "captions.json"
    calib.write_text('[{"image": "a.png", "caption": "a red square"}]')
    rtn = [QuantizeRequest(model="tiny-llama", method="rtn", format="W4A16", samples=n, calib=c)
           for n, c in ((16, None), (128, None), (16, str(calib)))]
    assert len({r.config_hash() for r in rtn}) == 1  # was: three configurations of one result
    assert "samples" not in rtn[0].identity().payload() and rtn[0].identity().calibration is None
    # the suites and `qigbench quantize` still agree on it
    case = Case("table2", "tiny-llama", "rtn", "W4A16", 16)
    assert case.config_hash() == rtn[0].config_hash() == Case("t", "tiny-llama", "rtn", "W4A16", 64).config_hash()
    # a method that calibrates keeps them
    gptq = [QuantizeRequest(model="tiny-llama", method="gptq", format="W4A16", samples=n) for n in (16, 128)]
    assert gptq[0].config_hash() != gptq[1].config_hash()


def test_what_a_method_consumes_is_its_own_declaration() -> None:
    from qigbench.engine.method import get_method

    method = get_method("gptq")
    assert type(method).needs_calibration  # declared on the plugin class
    data_free = type("DataFreeGPTQ", (type(method),), {"needs_calibration": False})(method.config)
    a = QuantizeRequest(model="tiny-llama", method="gptq", format="W4A16", samples=16).identity(data_free)
    b = QuantizeRequest(model="tiny-llama", method="gptq", format="W4A16", samples=128).identity(data_free)
    assert a.hash() == b.hash() and "samples" not in a.payload()  # not a check of the name "rtn"


def test_rows_of_runs_with_different_limits_never_share_a_key(tmp_path: Path) -> None:
    hashes = {}
    for limit in (None, 2, 10):
        options = SuiteOptions(methods=("rtn", "qig"), formats=("W4A8",), limit=limit)
        hashes[limit] = {c.ident(): c.config_hash() for c, _ in TABLES["table2"](options)}
    assert "tiny-qwen2vl-fp16-FP16" in hashes[None]
    for ident in hashes[None]:  # every configuration, the fp16 one included
        assert len({hashes[limit][ident] for limit in hashes}) == 3, ident  # was: one hash for every limit
    # a model measured on every example is the same quantized model `qigbench quantize` names
    case = next(c for c, _ in TABLES["table2"](SuiteOptions(methods=("qig",), formats=("W4A8",))) if not c.is_fp)
    request = QuantizeRequest(model=case.model, method=case.method, format=case.format, samples=case.samples)
    assert request.config_hash() == case.config_hash()
    limited = next(c for c, _ in TABLES["table2"](SuiteOptions(methods=("qig",), formats=("W4A8",), limit=2))
                   if not c.is_fp)
    assert limited.identity().payload()["limit"] == 2 and "limit" not in limited.identity().resume_fingerprint(0)


def test_stored_rows_without_the_limit_still_load(tmp_path: Path) -> None:
    """A database written before the limit was in the identity keeps loading."""
    path = tmp_path / "old.db"
    with ResultsStore(path) as store:
        store.record(ResultRow("tiny", "rtn", "W4A16", "h0", "qig_ocr", "exact_match", 0.5,
                               config={"model": "tiny", "method": "rtn", "samples": 16}))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    conn.close()
    with ResultsStore(path) as store:
        (row,) = store.rows()
    assert row.value == 0.5 and "limit" not in row.config and len(row_values(row)) == len(ROW_COLUMNS)
