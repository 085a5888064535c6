"""`gn-deploy`: export | fuse | inspect | validate | build | bench. Thin over the Python API."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gn_deploy import __version__
from gn_deploy.errors import GnDeployError, UsageError

if TYPE_CHECKING:
    from gn_deploy.fusion.report import FuseReport

EPILOG = """\
examples:
  gn-deploy export --model gn_deploy.models:demo_unet --input x:2x4x32x32 \\
      --dynamic x:0=batch -o demo.onnx
  gn-deploy fuse demo.onnx -o demo.fused.onnx --target onnx --report fuse.json
  gn-deploy fuse demo.onnx -o demo.op.onnx --target fused-op   # TensorRT plugin, ONNX Runtime
  gn-deploy inspect demo.onnx
  gn-deploy validate --model gn_deploy.models:demo_unet demo.onnx demo.fused.onnx \\
      --input x:3x4x32x32
  gn-deploy build demo.fused.onnx -o demo.engine --runtime tensorrt-rtx \\
      --compute-capability 8.6,12.0 --shapes x:1x4x32x32,2x4x32x32,4x4x32x32  # no GPU needed
  gn-deploy build demo.op.onnx -o demo.engine --shapes x:1x4x32x32,2x4x32x32,4x4x32x32 \\
      --precision fp16                                         # TensorRT and a GPU
  gn-deploy bench fuse demo.onnx --repeat 3
  gn-deploy bench kernels -o kernels.md                      # needs a CUDA GPU
"""


def _export(args: argparse.Namespace) -> int:
    from gn_deploy.export import export_model

    print(f"exporting {args.model} with the {args.exporter} exporter ...", file=sys.stderr)
    out = export_model(
        args.model,
        args.input,
        args.output,
        dynamic=args.dynamic,
        opset=args.opset,
        exporter=args.exporter,
        seed=args.seed,
    )
    print(f"wrote {out}")
    return 0


def _print_fuse_report(report: FuseReport, report_path: str | None) -> None:
    print(report.table())
    for row in report.sites:
        for warning in row.warnings:
            print(f"warning: site {row.name!r}: {warning}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}")
    print(report.summary())
    if report_path:
        print(f"report written to {report_path}")


def _fuse(args: argparse.Namespace) -> int:
    from gn_deploy.fusion import fuse_model

    report = fuse_model(
        args.model,
        args.output,
        target=args.target,
        verify=not args.no_verify,
        seed=args.seed,
        strict=args.strict,
        report_path=args.report,
        channels_last=args.channels_last,
    )
    _print_fuse_report(report, args.report)
    print(f"wrote {report.output}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from gn_deploy.fusion import inspect_model
    from gn_deploy.outputs import guard, inputs_of, write_file

    if args.report:
        guard([(Path(args.report), "--report")], inputs_of(Path(args.model)))
    report = inspect_model(
        args.model,
        target=args.target,
        verify=not args.no_verify,
        seed=args.seed,
        strict=args.strict,
    )
    if args.report:
        write_file(Path(args.report), report.to_json() + "\n")
    _print_fuse_report(report, args.report)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from gn_deploy.parity import validate

    report = validate(
        model=args.model,
        onnx_files=args.onnx,
        inputs=args.input,
        inputs_file=args.inputs,
        seed=args.seed,
        tolerance=args.tolerance,
        engines=args.engine,
        plugin=args.plugin,
    )
    print(report.table())
    print("parity: PASS" if report.ok else "parity: FAIL")
    return 0 if report.ok else 1


def _build(args: argparse.Namespace) -> int:
    from gn_deploy.trt.build import build_engine

    built = build_engine(
        args.model,
        args.output,
        shapes=args.shapes,
        precision=args.precision,
        timing_cache=args.timing_cache,
        plugin=args.plugin,
        runtime=args.runtime,
        compute_capabilities=args.compute_capability,
        report_path=args.report,
    )
    if args.report:
        print(f"report written to {args.report}")
    print(f"wrote {built.engine}: {built.summary()}")
    return 0


def _plugin(args: argparse.Namespace) -> int:
    from gn_deploy.trt.plugin import find_plugin_library
    from gn_deploy.trt.plugin_build import build_plugin

    if args.action == "build":
        print(build_plugin(args.tensorrt_include, args.cuda_arch))
    elif args.action == "ort":
        from gn_deploy.ort_library import library_path

        print(library_path())
    else:
        print(find_plugin_library())
    return 0


def _bench(args: argparse.Namespace) -> int:
    from gn_deploy import bench
    from gn_deploy.outputs import guard, write_file

    if args.onnx and args.what in ("scaling", "memory", "kernels"):
        raise UsageError(
            f"bench {args.what} {args.onnx[0]}: takes no model, it makes its own "
            "(models are for bench fuse and bench ort)"
        )
    if args.output:
        guard([(Path(args.output), "-o")], [(Path(m), "an input model") for m in args.onnx])
    text = bench.run(args.what, models=args.onnx, repeat=args.repeat, gigabytes=args.gigabytes)
    print(text)
    if args.output:
        write_file(Path(args.output), text + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    # A row whose peer did not run as labelled (bench kernels) makes the whole run a failure.
    return 1 if any(line.startswith("ERROR:") for line in text.splitlines()) else 0


class _Formatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal, the examples epilog kept line for line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _examples(*lines: str) -> dict[str, object]:
    """A subcommand's epilog of examples (each one run by tests/test_examples.py)."""
    return {
        "epilog": "examples:\n" + "\n".join(f"  {line}" for line in lines),
        "formatter_class": _Formatter,
    }


def _number_in(
    kind: type[int] | type[float], low: float, high: float, low_open: bool = False
) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` within [low, high] (or (low, high])."""
    shown = (lambda v: str(int(v))) if kind is int else (lambda v: f"{v:g}")
    where = f"{'above' if low_open else 'at least'} {shown(low)} and at most {shown(high)}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind.__name__}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: {where}")
        return value

    return parse


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seed",
        type=_number_in(int, 0, 2**32 - 1),
        default=0,
        help="seed of the random inputs, 0 to 2^32-1 (default 0)",
    )


def _add_plugin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plugin",
        metavar="LIB.so",
        help="gn-deploy's TensorRT plugin library (default: $GN_DEPLOY_TRT_PLUGIN, then what "
        "`gn-deploy plugin build` made, then a checkout's build/groupnorm-trt; "
        "`gn-deploy plugin path` prints which)",
    )


def _add_fuse_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        default="onnx",
        choices=["onnx", "fused-op", "trt-plugin"],
        help="onnx: standard GroupNormalization-21 (opset raised to 21 if needed), for "
        "TensorRT's own GroupNorm layer; fused-op: gn-deploy's FusedGroupNorm with SiLU folded "
        "in, run by gn-deploy's TensorRT plugin and by ONNX Runtime with gn-deploy's op library "
        "(the fastest on both); trt-plugin: the earlier name of fused-op (default: onnx)",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip proving each site numerically before rewriting it",
    )
    p.add_argument("--report", metavar="FILE.json", help="also write the site table as JSON")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 1, nothing written) on suspicious parameters such as an "
        "epsilon of 1e20 or NaN, instead of warning; and on a model without GN",
    )
    _add_common(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gn-deploy",
        description="Deploy group-normalization models: export from torch, fuse every GN "
        "spelling into one op, check parity, benchmark.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"gn-deploy {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "export",
        help="export a torch model to ONNX",
        description="Export a torch.nn.Module to ONNX with random example inputs.",
        **_examples(
            "gn-deploy export --model gn_deploy.models:demo_unet --input x:2x4x32x32 \\",
            "    --dynamic x:0=batch -o demo.onnx",
            "gn-deploy export --model my_project/nets.py:make_vae --input z:1x4x64x64:float16 \\",
            "    --exporter torchscript --opset 17 -o vae.onnx",
        ),
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="MODULE:FACTORY",
        help="a callable returning an nn.Module, e.g. gn_deploy.models:demo_unet "
        "or path/to/file.py:make_model",
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        required=True,
        metavar="NAME:DIMS[:DTYPE]",
        help="one forward argument, e.g. x:1x4x64x64 or x:1x4x64x64:float16 (repeat for several)",
    )
    p.add_argument(
        "--dynamic",
        action="append",
        default=[],
        metavar="NAME:AXIS=LABEL,...",
        help="dynamic axes of an input, e.g. x:0=batch,2=height,3=width",
    )
    p.add_argument(
        "--opset",
        type=_number_in(int, 11, 23),
        help="ONNX opset, 11 to 23 (default 18 dynamo, 17 torchscript)",
    )
    p.add_argument(
        "--exporter",
        default="dynamo",
        choices=["dynamo", "torchscript"],
        help="torch's exporter (default dynamo)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    _add_common(p)
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "fuse",
        help="fuse every GN into one op and write a new model",
        description="Find every group normalization, prove each rewrite on "
        "random inputs, replace it with one op. The input is never "
        "modified; the output is written atomically.",
        **_examples(
            "gn-deploy fuse demo.onnx -o demo.fused.onnx",
            "gn-deploy fuse demo.onnx -o demo.op.onnx --target fused-op --report fuse.json",
        ),
    )
    p.add_argument("model", metavar="IN.onnx")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    _add_fuse_options(p)
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="fused-op: set channels_last=1 on every FusedGroupNorm, so that the plugin "
        "accepts only channels-last formats for 4-D tensors: for builders that cannot time "
        "formats and take the first one offered (TensorRT-RTX ahead of time, e.g. through "
        "your own code; `gn-deploy build` sets it for TensorRT-RTX itself)",
    )
    p.set_defaults(func=_fuse)

    p = sub.add_parser(
        "inspect",
        help="list GN sites and refused candidates; writes nothing",
        description="Show every GN site the fuser would rewrite and every "
        "GN-like candidate it cannot prove, with the reason.",
        **_examples(
            "gn-deploy inspect demo.onnx",
            "gn-deploy inspect demo.onnx --target fused-op --report sites.json",
        ),
    )
    p.add_argument("model", metavar="MODEL.onnx")
    _add_fuse_options(p)
    p.set_defaults(func=_inspect)

    p = sub.add_parser(
        "validate",
        help="compare torch / ONNX Runtime outputs on one input",
        description="Run one input set through a torch model and/or ONNX "
        "files and compare each with the first (torch when given). "
        "Exit code 1 on a mismatch.",
        **_examples(
            "gn-deploy validate --model gn_deploy.models:demo_unet --input x:2x4x32x32 \\",
            "    demo.onnx demo.fused.onnx demo.op.onnx",
            "gn-deploy validate demo.onnx demo.fused.onnx --inputs my_inputs.npz",
        ),
    )
    p.add_argument(
        "onnx",
        nargs="*",
        metavar="MODEL.onnx",
        help="ONNX files (run by ONNX Runtime; FusedGroupNorm through gn-deploy's op library)",
    )
    p.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        help="torch model, used as reference (the factory is called again, with the random "
        "generators seeded as export seeds them: random weights match the export's)",
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME:DIMS[:DTYPE]",
        help="random input of this shape (default: the first model's static shapes)",
    )
    p.add_argument("--inputs", metavar="FILE.npz", help="use these inputs instead of random")
    p.add_argument(
        "--tolerance",
        type=_number_in(float, 0, 1, low_open=True),
        help="relative-L2 bound above 0 and at most 1 (default by dtype: fp32 1e-5, "
        "fp16 2e-3, bf16 1e-2)",
    )
    p.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="MODEL.engine",
        help="also run this TensorRT engine (needs TensorRT and a GPU; repeatable)",
    )
    _add_plugin_option(p)
    _add_common(p)
    p.set_defaults(func=_validate)

    p = sub.add_parser(
        "build",
        help="build a TensorRT or TensorRT-RTX engine, with the GN plugin where the model uses it",
        description="Build an engine from ONNX (the output of `fuse`) with TensorRT 10/11 for "
        "the local GPU, or with TensorRT-RTX ahead of time for the GPUs named by "
        "--compute-capability, on any machine (pip install 'gn-deploy[trt-rtx]'; no GPU "
        "needed). gn-deploy's plugin library is loaded when the model has FusedGroupNorm ops. "
        "TensorRT 10 uses builder precision flags; TensorRT 11 and TensorRT-RTX build strongly "
        "typed, so for fp16 the graph is converted first, keeping GN gamma/beta in fp32. "
        "For TensorRT-RTX, FusedGroupNorm ops that do not set channels_last get "
        "channels_last=1 (it cannot time formats ahead of time). Written atomically; the last "
        "line says what was built: engine layers, plugin layers and their format.",
        **_examples(
            "gn-deploy build demo.fused.onnx -o demo.engine --runtime tensorrt-rtx \\",
            "    --compute-capability 8.6,12.0 --shapes x:1x4x32x32,2x4x32x32,4x4x32x32",
            "gn-deploy build demo.op.onnx -o demo.engine --precision fp16 --report build.json \\",
            "    --shapes x:1x4x32x32,2x4x32x32,4x4x32x32               # TensorRT and a GPU",
        ),
    )
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.engine")
    p.add_argument(
        "--shapes",
        action="append",
        default=[],
        metavar="NAME:MIN,OPT,MAX",
        help="optimization profile of a dynamic input, e.g. "
        "x:1x4x32x32,2x4x64x64,4x4x128x128 (static inputs default to their shape)",
    )
    p.add_argument(
        "--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="default fp32"
    )
    p.add_argument(
        "--timing-cache",
        metavar="FILE",
        help="read and update this TensorRT timing cache (faster rebuilds; not TensorRT-RTX)",
    )
    p.add_argument(
        "--runtime",
        default="auto",
        choices=["auto", "tensorrt", "tensorrt-rtx"],
        help="the builder (default auto: TensorRT if installed, else TensorRT-RTX)",
    )
    p.add_argument(
        "--compute-capability",
        metavar="X.Y[,X.Y...]",
        help="TensorRT-RTX: the GPUs to build for, e.g. 8.6,12.0 (default: the local GPU)",
    )
    p.add_argument(
        "--report",
        metavar="FILE.json",
        help="also write what was built as JSON: runtime, version, targets, precision, "
        "profiles, network and engine layers, plugin layers with the formats chosen for them, "
        "bytes, seconds",
    )
    _add_plugin_option(p)
    p.set_defaults(func=_build)

    p = sub.add_parser(
        "plugin",
        help="gn-deploy's TensorRT plugin library (build it, or print where it is) and its "
        "ONNX Runtime op library",
        description="build: compile libgn_trt_plugin.so from the sources installed with "
        "gn-deploy (CMake and nvcc; TensorRT's headers from a TensorRT install or a "
        "NVIDIA/TensorRT checkout) into ~/.cache/gn-deploy/plugin, and print its path. path: "
        "print the library `build` would load (--plugin, $GN_DEPLOY_TRT_PLUGIN, the cache, a "
        "checkout's build folder). ort: print the path of the ONNX Runtime op library "
        "(libgn_ort.so: FusedGroupNorm on the CPU), building it first with the C++ compiler if "
        "needed, for ONNX Runtime's RegisterCustomOpsLibrary in any language.",
        **_examples(
            "gn-deploy plugin build --tensorrt-include ~/src/TensorRT/include --cuda-arch 86,89",
            "trtexec --onnx=m.op.onnx --dynamicPlugins=$(gn-deploy plugin path)",
            "polygraphy run m.op.onnx --trt --plugins $(gn-deploy plugin path)",
            "gn-deploy plugin ort",
        ),
    )
    p.add_argument("action", choices=["build", "path", "ort"])
    p.add_argument(
        "--tensorrt-include",
        metavar="DIR",
        help="TensorRT's include/ folder (default: $TensorRT_ROOT/include, then /usr/include, "
        "/usr/local/include, /usr/local/tensorrt/include, /opt/tensorrt/include, ...)",
    )
    p.add_argument(
        "--cuda-arch",
        metavar="N[,N...]",
        help="CUDA architectures, e.g. 86,89,90 or 90a, each one the installed nvcc knows "
        "(default: 80,86,89,90 and 100,120 with nvcc >= 12.8)",
    )
    p.set_defaults(func=_plugin)

    p = sub.add_parser(
        "bench",
        help="benchmarks: fuse speed, ONNX Runtime speed, GN kernels on a GPU",
        description="fuse: time `fuse` on the built-in SD-1.5-layout UNet (both exporters) "
        "or on the given ONNX files. scaling: fuse time against node count on chains of "
        "1, 2 and 4 such UNets. memory: peak memory of `fuse` on a generated model "
        "with --gigabytes of external weights. ort: ONNX Runtime (CPU) latency of one GN + "
        "SiLU layer on the SD UNet and VAE shapes as torch's sandwich, GroupNormalization-21, "
        "gn-deploy's fused op and a copy (the floor), and of the built-in SD UNet and VAE "
        "decoder (or the given ONNX files) unfused and fused for both targets, at 1 and 2 "
        "threads, with the ops ONNX Runtime ran. kernels (needs a CUDA GPU): the design's "
        "benchmark shapes x layouts, gn-deploy's kernels against torch's group_norm and "
        "torch.compile of it, achieved GB/s against the copy bandwidth measured in the same run.",
        **_examples(
            "gn-deploy bench fuse demo.onnx --repeat 3",
            "gn-deploy bench memory --gigabytes 0.5",
            "gn-deploy bench kernels -o kernels.md   # needs a CUDA GPU",
        ),
    )
    p.add_argument("what", choices=["fuse", "scaling", "memory", "ort", "kernels"])
    p.add_argument("onnx", nargs="*", metavar="MODEL.onnx")
    p.add_argument(
        "--repeat",
        type=_number_in(int, 1, 1000),
        default=5,
        help="timed runs per case, 1 to 1000 (median; default 5)",
    )
    p.add_argument(
        "--gigabytes",
        type=_number_in(float, 0, 64, low_open=True),
        default=2.2,
        help="memory: weight size of the generated model (default 2.2)",
    )
    p.add_argument("-o", "--output", metavar="FILE.md", help="also write the table here")
    p.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from gn_deploy.startup import defer_sympy

    defer_sympy()
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except GnDeployError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"gn-deploy {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        else:
            print(
                f"gn-deploy {args.command}: internal error: {type(exc).__name__}: {exc} "
                "(run with --verbose for the traceback)",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
