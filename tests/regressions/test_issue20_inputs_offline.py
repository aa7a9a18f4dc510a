"""Issue 20 item 12: real models on an air-gapped node with no offline variable set.

Was: ``pytest suites/ --model qwen2vl --limit 2`` took 330 s, printed ~1,500 lines of hub retries
and FAILED 2 items (the fidelity items: they need no dataset, so they went on to load the model
and paid every retry). Now the hub is probed once (short timeout), the process goes offline, and
every item that needs the model is skipped with the one message.

The "hub" here is a local socket that accepts connections and never answers (what an unroutable
node looks like to a client: each request hangs until its timeout). ``HF_ENDPOINT`` points
huggingface_hub, transformers and datasets at it, so the number of connections it sees counts
every lookup the run made: exactly one, the probe.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from regression_env import ROOT, run

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class SilentHub:
    """A TCP listener that accepts and counts connections but never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append(conn)  # held open, never answered

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        for conn in self.connections:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_hub() -> Iterator[SilentHub]:
    hub = SilentHub()
    yield hub
    hub.close()


def air_gapped_env(tmp_path: Path, hub: SilentHub) -> dict[str, str]:
    """The user's environment with NO offline variable, an empty HF cache and the silent hub."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    env.update(
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_CACHE=str(tmp_path / "hf-home" / "hub"),
        HF_ENDPOINT=hub.url,
        QIGBENCH_HUB_PROBE_TIMEOUT="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    return env


def test_offline_real_model_suite_without_offline_variables_skips_every_item(
    tmp_path: Path, silent_hub: SilentHub
) -> None:
    done = run(
        [sys.executable, "-m", "pytest", "suites/", "--model", "qwen2vl", "--limit", "2", "-q",
         "-p", "no:cacheprovider", "--db", str(tmp_path / "r.db")],
        air_gapped_env(tmp_path, silent_hub),
        timeout=240,  # the old code needs ~330 s here (5 retries per hub lookup)
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert " failed" not in out and " passed" not in out and " skipped" in out, out[-3000:]
    assert "Traceback" not in out and "Retrying in" not in out
    assert "the hub is unreachable (one probe of " + silent_hub.url in out
    assert "hf download Qwen/Qwen2-VL-7B-Instruct" in out and "hf download meta-llama/Llama-2-7b-hf" in out
    assert len(silent_hub.connections) == 1  # the probe; no library lookup went out after it
    assert len(out.splitlines()) < 40
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["quantize", "--model", "qwen2vl", "--method", "rtn"],
        ["eval", "--model", "qwen2vl", "--tasks", "qig_ocr"],
        ["run", "--model", "qwen2vl", "--tasks", "vizwiz,fidelity"],
    ],
    ids=["quantize", "eval", "run"],
)
def test_commands_probe_the_hub_once_and_name_the_fixes(
    argv: list[str], tmp_path: Path, silent_hub: SilentHub
) -> None:
    extra = ["--db", str(tmp_path / "r.db"), "--out", str(tmp_path / "rep")] if argv[0] == "run" else []
    done = run([sys.executable, "-m", "qigbench.cli", *argv, *extra], air_gapped_env(tmp_path, silent_hub),
               timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-3000:]
    assert "the hub is unreachable" in out and "hf download Qwen/Qwen2-VL-7B-Instruct" in out, out[-3000:]
    assert "Traceback" not in out and "Retrying in" not in out
    assert len(silent_hub.connections) == 1


def test_the_probe_is_bounded_by_its_timeout_and_switches_every_library_offline(
    tmp_path: Path, silent_hub: SilentHub
) -> None:
    script = (
        "import time, os, huggingface_hub.constants as hc, datasets.config as dc\n"
        "from qigbench.models import hub\n"
        "t = time.perf_counter(); s = hub.hub_status(); dt = time.perf_counter() - t\n"
        "again = hub.hub_status()\n"
        "from transformers.utils.hub import is_offline_mode\n"
        "print(s.reachable, dt < 5, again, hc.HF_HUB_OFFLINE, dc.HF_HUB_OFFLINE, is_offline_mode(),\n"
        "      os.environ['HF_DATASETS_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'])\n"
    )
    done = run([sys.executable, "-c", script], air_gapped_env(tmp_path, silent_hub), timeout=120)
    assert done.stdout.split() == ["False", "True", "None", "True", "True", "True", "1", "1"], done.stderr[-2000:]
    assert len(silent_hub.connections) == 1


def test_an_answering_hub_is_reachable_even_with_an_error_status(tmp_path: Path) -> None:
    """Any HTTP answer means the hub is there: nothing is switched off."""
    import http.server

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        from qigbench.models.hub import probe

        assert probe(f"http://127.0.0.1:{server.server_address[1]}", 2.0) == (True, "")
    finally:
        server.shutdown()
        server.server_close()
