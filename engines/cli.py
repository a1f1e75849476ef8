"""The `streamsam build` subcommand. Importing this module loads nothing beyond `import streamsam`
(numpy); TensorRT, Polygraphy and cuda-python are imported when the command runs."""

from __future__ import annotations

import argparse

from streamsam.checks import positive_int

from .profiles import DEFAULT_MAX_OBJECTS, DEFAULT_MAX_POINTS, DEFAULT_MAX_STREAMS


def _build(args: argparse.Namespace) -> None:
    from .build import build_engines

    build_engines(
        args.onnx_dir,
        args.out,
        max_objects=args.max_objects,
        max_points=args.max_points,
        max_streams=args.max_streams,
        workspace_gb=args.workspace_gb,
        precision=args.precision,
        timing_cache=args.timing_cache,
    )


def add_build_command(subparsers) -> argparse.ArgumentParser:
    """Add `build` to the `streamsam` command's subparsers; it runs `args.run(args)`."""
    build = subparsers.add_parser(
        "build",
        help="exported graphs -> TensorRT engines for this GPU (needs TensorRT: JetPack, or NVIDIA's index)",
        description=(
            "Build the four TensorRT engines of a folder written by `streamsam export` (or converted to FP16) "
            "for the GPU this runs on, each with a JSON sidecar (TensorRT version, GPU, ONNX sha256, profiles, "
            "this command). Engines run only with the TensorRT version and the GPU they were built for."
        ),
    )
    build.add_argument("--onnx-dir", required=True, help="a folder written by `streamsam export`")
    build.add_argument("--out", required=True, help="engines folder (created; the timing cache is kept there)")
    build.add_argument("--max-objects", type=positive_int, default=DEFAULT_MAX_OBJECTS, help=f"objects tracked at once (default {DEFAULT_MAX_OBJECTS})")
    build.add_argument(
        "--max-points", type=positive_int, default=DEFAULT_MAX_POINTS, help=f"prompt points per object on one frame (default {DEFAULT_MAX_POINTS})"
    )
    build.add_argument(
        "--max-streams", type=positive_int, default=DEFAULT_MAX_STREAMS,
        help=f"frames per call: streams one MultiStreamTracker steps together (default {DEFAULT_MAX_STREAMS}; "
        "--max-objects then counts all their objects)",
    )
    build.add_argument(
        "--precision",
        choices=("fp16", "fp32"),
        default="fp16",
        help="fp16 (default): strongly typed for graphs converted to FP16, else TensorRT 10's FP16 builder flag",
    )
    build.add_argument("--workspace-gb", type=float, help="cap on TensorRT's workspace memory in GiB (default: TensorRT's)")
    build.add_argument("--timing-cache", help="timing cache file (default: one per GPU and TensorRT version in --out)")
    build.set_defaults(run=_build)
    return build
