"""The one identity of a quantized configuration: what its ``config_hash`` is computed from.

``qigbench quantize`` (:class:`qigbench.pipeline.QuantizeRequest`), the suites
(:class:`qigbench.matrix.cases.Case`), the suites' quantized-model cache, the results store and
the engine's resume check all build a :class:`ConfigIdentity` and hash it here, so the same
model / method / options / format / calibration gets the same hash whichever door it came in by.

What is in it, and why:

* ``model``, ``method``, ``format``, the ``options`` as given and the method's whole resolved
  ``config`` (defaults included: a changed default is a new configuration, never old results
  reused under the same hash), the calibration ``samples``;
* ``calibration``: a *name* for the calibration set, not a path (paths differ between machines):
  ``"default"`` is the model's offline synthetic set (a pure function of the model's kind, the
  samples and the seed), ``"ocr"`` the suites' synthetic OCR set (Table A3), and a user's file is
  named by its content, ``"sha256:<hex>"``;
* ``max_length`` and ``propagation`` only when they change the model: ``max_length=None`` (no
  truncation, the loader's own default) and a propagation equal to what the engine picks for the
  format on its own (``auto``: see ``EngineConfig.resolve_propagation``) are left out of the
  payload, so every configuration the suites stored (which never set either) keeps its hash;
* not the seed: it is its own key column (``ConfigKey.seed``), so the seeds of one configuration
  share a hash and reports pool them. Where the seed matters too (resuming a half-done run),
  :meth:`ConfigIdentity.resume_fingerprint` adds it.

Nothing about *where* or *how* it runs is in it (device, dtype, batch size, memory budget,
cache folders, progress bars).

The payload of a suite case is exactly the one :class:`~qigbench.matrix.cases.Case` hashed before
this module existed (``{model, method, format, options, config, samples}`` with the calibration
name beside it; ``{model, method: "fp16"}`` for the unquantized model), so stored results and the
CI baseline keep their keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qigbench.config import changed_fields
from qigbench.results.row import config_hash

#: the method name of the unquantized model
FP_METHOD = "fp16"
#: the calibration name of the model's offline synthetic set
DEFAULT_CALIBRATION = "default"
#: methods stored under the paper's display name
DISPLAY_NAMES = {"qig-gptq": "qig+gptq"}


def display_name(method: str) -> str:
    """The name a method plugin is shown under in tables (``qig-gptq`` -> ``qig+gptq``)."""
    return DISPLAY_NAMES.get(method, method)


def variant_label(method: str, config: Any = None, base: Any = None, *, name: str | None = None) -> str:
    """The one name a configuration is stored, tabled, plotted and titled under.

    ``name`` (default: ``method``'s display name), plus ``[key=value,...]`` for every field of
    ``config`` that differs from ``base`` (default: the defaults of ``config``'s class): ``qig``,
    ``qig[steps=4]``, ``qig+gptq[quadrature=gauss,steps=4]``. Fields that cannot change the result
    (:func:`qigbench.config.exact_option`) never enter it, and passing a default value explicitly
    gives the plain name, so a label says exactly how the run departs from the method's defaults.
    A nested field is shown by its own name where that is unambiguous (``qig.steps`` -> ``steps``).
    A ``name`` that already ends in ``[...]`` (a suite's named variant, ``mbq[ocr-16]``) gets the
    changes added inside its brackets.
    """
    label = name if name is not None else display_name(method)
    if config is None:
        return label
    if base is None:
        base = type(config)()
    return with_tags(label, label_tags(config, changed_fields(config, base)))


def label_tags(config: Any, changes: Mapping[str, Any]) -> list[str]:
    """``key=value`` strings of ``changes`` (option names of ``config``), nested keys shortened to
    their last part where no other field of ``config`` has that name."""
    leaves = _leaf_names(config)
    tags = []
    for key, value in changes.items():
        leaf = key.rsplit(".", 1)[-1]
        shown = leaf if leaves.count(leaf) == 1 else key
        tags.append(f"{shown}={_label_value(value)}")
    return tags


def with_tags(label: str, tags: Sequence[str]) -> str:
    """``label`` with ``tags`` in brackets, merged into brackets it already has."""
    if not tags:
        return label
    if label.endswith("]") and "[" in label:
        return f"{label[:-1]},{','.join(tags)}]"
    return f"{label}[{','.join(tags)}]"


def _leaf_names(config: Any) -> list[str]:
    names = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            names.extend(_leaf_names(value))
        else:
            names.append(f.name)
    return names


def _label_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(_label_value(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class ConfigIdentity:
    model: str
    method: str
    format: str = ""
    options: tuple[tuple[str, str], ...] = ()
    #: the method's resolved config as plain data (``Method.describe()["config"]``)
    config: Mapping[str, Any] = field(default_factory=dict)
    samples: int = 0
    calibration: str | None = DEFAULT_CALIBRATION
    max_length: int | None = None
    #: the stream the engine propagates when it is not the format's automatic choice; None: automatic
    propagation: str | None = None

    @classmethod
    def fp(cls, model: str) -> ConfigIdentity:
        return cls(model=model, method=FP_METHOD, calibration=None)

    @property
    def is_fp(self) -> bool:
        return self.method == FP_METHOD

    def payload(self) -> dict[str, Any]:
        """What identifies the quantized model (the calibration name is hashed beside it)."""
        if self.is_fp:
            return {"model": self.model, "method": FP_METHOD}
        out: dict[str, Any] = {
            "model": self.model,
            "method": self.method,
            "format": self.format,
            "options": [list(o) for o in self.options],
            "config": dict(self.config),
            "samples": self.samples,
        }
        if self.max_length is not None:
            out["max_length"] = self.max_length
        if self.propagation is not None:
            out["propagation"] = self.propagation
        return out

    def calibration_payload(self) -> dict[str, Any]:
        return {"calibration": None if self.is_fp else self.calibration}

    def hash(self) -> str:
        """The ``config_hash`` of results rows, ``configs_done`` and the baseline."""
        return config_hash(self.payload(), self.calibration_payload())

    def resume_fingerprint(self, seed: int) -> dict[str, Any]:
        """What a resume directory must match: the identity plus the calibration seed."""
        return {**self.payload(), **self.calibration_payload(), "seed": seed}

