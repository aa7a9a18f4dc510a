"""``qigbench cost``: predict a whole model's calibration time and peak memory from a few real-shape blocks."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from qigbench.errors import QigbenchError

NAME = "cost"
HELP = (
    "run methods on a few blocks of a real-shape model (random weights, built offline) and predict the whole "
    "model's calibration time and peak memory, in the paper's Table 6 layout"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a real shape: shape:qwen2vl-7b, shape:internvl2-26b ... "
                        "(see `qigbench models`); @LAYERS+vision=N+width=D also works")
    parser.add_argument("--method", action="append", required=True, metavar="NAME[:KEY=VALUE,...]",
                        help="method, repeatable; options after a colon, e.g. qig:sensitivity=leave_one_out")
    parser.add_argument("--format", default="W3A16")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="option for every method (repeatable)")
    parser.add_argument("--samples", type=int, default=128, help="calibration samples (paper: 128)")
    parser.add_argument("--blocks", type=int, help="decoder blocks to build and measure (default 2)")
    parser.add_argument("--vision-layers", type=int, help="vision-tower layers to build (default 2; its time is "
                        "scaled to the real depth)")
    parser.add_argument("--width-divisor", type=int, help="narrow the language model by this factor to fit a small "
                        "machine (default 1 = the real widths)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=448, help="synthetic calibration image side (default 448)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", help="where shapes and synthetic data are built (env QIGBENCH_CACHE)")
    parser.add_argument("--json", help="also write the measurements and predictions to this JSON file")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--prepare-depths", type=int, default=3, help="depths a prepare pass (MBQ's gradient pass) "
                        "is timed at, k, k-1, ... (default 3: a least-squares line with a check; needs --blocks >= 3)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="time with the wall clock "
                        "(default) or this process's CPU time (steadier on a shared CPU; not GPU time)")
    parser.add_argument("--memory-budget", help="bytes a streamed chunk of attribution / search may take, e.g. 8GiB "
                        "(default: half the device's free memory)")
    placement = parser.add_argument_group("placement: peak memory per device of `quantize --devices` at the real shape")
    placement.add_argument("--devices", help="the devices to split the decoder over, e.g. cuda:0,cuda:1,cuda:2,cuda:3 "
                           "(or a count: 4); they need not be on this machine")
    placement.add_argument("--device-memory", help="memory of each of those devices, e.g. 24GiB: says whether it fits")
    placement.add_argument("--placement-samples", type=int, help="calibration samples of the placed run (default "
                           "--samples; the measured working set is scaled to it)")
    placement.add_argument("--placement-dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                           help="the dtype the placed model runs in (default bfloat16, as on CUDA)")


def _shape(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from qigbench.models.shapes.alias import PREFIX, parse_shape_alias
    from qigbench.models.shapes.data import SHAPES

    name = args.model if args.model.startswith(PREFIX) else f"{PREFIX}{args.model}"
    if name[len(PREFIX):].partition("@")[0] not in SHAPES:
        raise QigbenchError(
            f"qigbench cost measures real-shape models; {args.model!r} is not one. Use one of: "
            + ", ".join(f"{PREFIX}{n}" for n in SHAPES)
        )
    shape = parse_shape_alias(name)
    vision_layers = args.vision_layers if SHAPES[shape.name].multimodal else None  # a text model has no tower
    changes = {k: v for k, v in (("layers", args.blocks), ("vision_layers", vision_layers),
                                 ("width_divisor", args.width_divisor)) if v is not None}
    shape = replace(shape, **changes)
    shape.folder(args.cache_dir)  # validate the depth/width now, before anything runs
    return shape


def _method(entry: str, common: tuple[tuple[str, str], ...]) -> tuple[str, tuple[tuple[str, str], ...]]:
    from qigbench.commands.quantize import parse_options

    name, _, rest = entry.partition(":")
    own = parse_options([p for p in rest.split(",") if p]) if rest else ()
    return name.strip(), common + own


def _placement_devices(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    if text.strip().isdigit():
        return tuple(f"cuda:{i}" for i in range(int(text)))
    from qigbench.engine.placement import parse_devices

    return parse_devices(text)


def _probe(device: str, wanted: bool):  # type: ignore[no-untyped-def]
    import contextlib

    from qigbench.cost.placement import UnitProbe

    return UnitProbe(device) if wanted else contextlib.nullcontext()


def _print_placements(args, shape, spec, rows, units, devices) -> None:  # type: ignore[no-untyped-def]
    import torch

    from qigbench.cost.placement import RealShape, format_placement, predict_placement
    from qigbench.engine.method import get_method
    from qigbench.memory import parse_bytes
    from qigbench.pipeline import QuantizeRequest

    real = RealShape.of(spec)
    dtype_bytes = {"bfloat16": 2, "float16": 2, "float32": 4}[args.placement_dtype]
    measured_dtype = QuantizeRequest("", "", "", device=args.device, dtype=args.dtype).torch_dtype()
    capacity = parse_bytes(args.device_memory)
    measured_rows = [r for r in rows if r.run is not None]
    for row, unit_memory in zip(measured_rows, units, strict=True):
        report = row.run.report
        name = row.label.partition(":")[0]
        method = get_method(name, dict(row.run.request.options))
        kept = 2 if report.propagation == "quantized" or method.keeps_quantized_stream() else 1
        prediction = predict_placement(
            spec, devices, method=name, samples=args.placement_samples or args.samples,
            measured_samples=args.samples, tokens=int(report.token_types.shape[1]),
            batch_size=args.batch_size, streams=kept, measured_working=unit_memory.working,
            measured_dtype_bytes=torch.tensor([], dtype=measured_dtype).element_size(),
            width_divisor=shape.width_divisor, capacity=capacity, dtype_bytes=dtype_bytes, real=real,
        )
        print()
        samples = args.placement_samples or args.samples
        print(format_placement(f"{row.label} {args.format}, {samples} samples", spec, prediction))


def run(args: argparse.Namespace) -> int:
    import torch

    from qigbench.commands.quantize import parse_options
    from qigbench.cost.errors import CostModelError
    from qigbench.cost.measure import CostRequest, measure
    from qigbench.cost.predict import predict
    from qigbench.cost.table import CostRow, Setting, format_table
    from qigbench.memory import CalibrationOutOfMemoryError, parse_bytes
    from qigbench.models.shapes.data import SHAPES

    shape = _shape(args)
    spec = SHAPES[shape.name]
    common = parse_options(args.option)
    devices = _placement_devices(args.devices)
    rows, units = [], []
    for entry in args.method:
        method, options = _method(entry, common)
        request = CostRequest(
            shape=shape, method=method, options=options, format=args.format, samples=args.samples,
            batch_size=args.batch_size, image_size=args.image_size, device=args.device, dtype=args.dtype,
            seed=args.seed, cache_dir=args.cache_dir, progress=not args.no_progress,
            memory_budget=parse_bytes(args.memory_budget), prepare_depths=args.prepare_depths, clock=args.clock,
        )
        try:
            with _probe(args.device, bool(devices)) as unit_memory:
                measured = measure(request)
            units.append(unit_memory)
        # one method running out of memory must not lose the others
        except (torch.OutOfMemoryError, CalibrationOutOfMemoryError) as err:
            rows.append(CostRow(entry, None, None, error=f"out of memory ({str(err).splitlines()[0][:120]})"))
            torch.cuda.empty_cache()
            continue
        try:
            prediction = predict(measured.measurement, spec.layers, spec.vision_layers)
        except CostModelError as err:  # e.g. a negative per-block slope: say so, never print a made-up number
            rows.append(CostRow(entry, None, None, error=f"no prediction: {err}"))
            continue
        rows.append(CostRow(entry, measured, prediction))
    from qigbench.pipeline import QuantizeRequest

    dtype = str(QuantizeRequest("", "", "", device=args.device, dtype=args.dtype).torch_dtype()).removeprefix("torch.")
    setting = Setting(spec, shape, args.device, dtype, args.samples, args.image_size, args.format)
    print(format_table(setting, rows))
    if devices:
        _print_placements(args, shape, spec, rows, units, devices)
    if args.json:
        payload = [
            {"method": r.label, "error": r.error,
             "measurement": asdict(r.run.measurement) if r.run else None,
             "prediction": asdict(r.prediction) if r.prediction else None,
             "mean_block_error": r.run.report.mean_block_error if r.run else None}
            for r in rows
        ]
        with open(args.json, "w") as f:
            json.dump({"model": shape.spelling, "format": args.format, "samples": args.samples,
                       "device": args.device, "clock": args.clock, "rows": payload}, f, indent=1)
    return 0 if all(r.prediction is not None for r in rows) else 1
