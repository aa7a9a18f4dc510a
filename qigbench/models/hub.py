"""Can this process reach the Hugging Face hub? Asked once, with a short timeout.

On an air-gapped node with no offline variable set, every hub lookup of huggingface_hub,
transformers and datasets retries (5 times, with back-off) before it fails: a suite of real
models spent 330 s and printed ~1,500 lines of retries, and the items that got as far as
loading the model failed. :func:`hub_status` probes the endpoint once per process (one HTTP HEAD
through the user's proxies, bounded by a thread join, so a hanging DNS lookup cannot stall it
either); when the hub does not answer, :func:`go_offline` switches the three libraries to their
offline mode for the rest of the process (their module constants, read at call time, and the
environment variables, which worker processes inherit) and every later lookup answers from the
local caches at once.

The probe's target and timeout are settings: ``QIGBENCH_HUB_PROBE_URL`` (default
``$HF_ENDPOINT``, else ``https://huggingface.co``) and ``QIGBENCH_HUB_PROBE_TIMEOUT`` (seconds,
default 3). Any HTTP answer, even an error status, means reachable.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

PROBE_URL_ENV = "QIGBENCH_HUB_PROBE_URL"
PROBE_TIMEOUT_ENV = "QIGBENCH_HUB_PROBE_TIMEOUT"
DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT = 3.0
#: what each library reads to stay off the network (the first two: huggingface_hub / transformers)
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubStatus:
    reachable: bool
    url: str
    seconds: float
    detail: str = ""  # why not, when unreachable

    def reason(self) -> str:
        """One clause for messages: why the hub counts as offline."""
        return (
            f"the hub is unreachable (one probe of {self.url}: {self.detail}, after {self.seconds:.1f}s; "
            "qigbench switched huggingface_hub, transformers and datasets to offline mode for this run)"
        )


_STATUS: dict[str, HubStatus] = {}


def hub_offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``), read now."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def probe_target() -> tuple[str, float]:
    url = os.environ.get(PROBE_URL_ENV) or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    raw = os.environ.get(PROBE_TIMEOUT_ENV, "")
    try:
        timeout = float(raw) if raw.strip() else DEFAULT_TIMEOUT
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    return url, max(timeout, 0.05)


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """One HEAD request to ``url``: (reachable, why not). Never takes much longer than ``timeout``."""
    answer: list[tuple[bool, str]] = []

    def ask() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "qigbench-hub-probe"})
            with urllib.request.urlopen(request, timeout=timeout):
                answer.append((True, ""))
        except urllib.error.HTTPError:  # an HTTP status is an answer: the hub is there
            answer.append((True, ""))
        except Exception as err:  # URLError (DNS, refused, unroutable), timeouts, TLS errors
            reason = getattr(err, "reason", err)
            answer.append((False, f"{type(err).__name__}: {reason}"))

    worker = threading.Thread(target=ask, name="qigbench-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)  # DNS resolution ignores the socket timeout: the join bounds it
    return answer[0] if answer else (False, f"no answer in {timeout:.1f}s (name lookup or connection hangs)")


def hub_status() -> HubStatus | None:
    """``None`` when the hub is switched off already; else whether it answered (probed once per
    process and target). Unreachable: the process goes offline (:func:`go_offline`)."""
    if hub_offline():
        return None
    url, timeout = probe_target()
    if url not in _STATUS:
        start = time.perf_counter()
        reachable, detail = probe(url, timeout)
        _STATUS[url] = HubStatus(reachable, url, time.perf_counter() - start, detail)
    status = _STATUS[url]
    if not status.reachable:
        go_offline()
    return status


def unreachable_reason() -> str | None:
    """Why this process treats the hub as offline after a failed probe (``None``: it did not probe or
    the hub answered)."""
    failed = [s for s in _STATUS.values() if not s.reachable]
    return failed[-1].reason() if failed else None


def go_offline() -> None:
    """Offline mode for huggingface_hub, transformers and datasets in this process and its children."""
    for key in OFFLINE_VARIABLES:
        os.environ[key] = "1"
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:  # read at call time by huggingface_hub and transformers (is_offline_mode)
        hub_constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:  # datasets copies the flag at import
        datasets_config.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
        datasets_config.HF_DATASETS_OFFLINE = True  # type: ignore[attr-defined]


def forget() -> None:
    """Forget the probe results (tests)."""
    _STATUS.clear()
