"""The `streamsam` command. Each subcommand imports what it needs when it runs, so `--help` and
the lean commands work without torch."""

from __future__ import annotations

import argparse
import sys

from .errors import StreamSamError


def _export(args: argparse.Namespace) -> None:
    from streamsam.errors import require

    require("torch", "export")
    from streamsam.export.onnx_export import ExportOptions, export_checkpoint

    export_checkpoint(
        args.checkpoint,
        args.out,
        config=args.config,
        image_size=args.image_size,
        options=ExportOptions(opset=args.opset, max_prompted_frames=args.max_prompted_frames, check=not args.no_check),
    )
    print(f"wrote {args.out}/manifest.json and four graphs")


def _contracts(args: argparse.Namespace) -> None:
    from .contracts import DEFAULT_DIMS, markdown_table

    dims = DEFAULT_DIMS
    if args.onnx_dir:
        from .manifest import read_manifest

        dims = read_manifest(args.onnx_dir).dims
    print(markdown_table(dims))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamsam", description="SAM 2 / SAM 2.1 video segmentation at the edge.")
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export",
        help="official checkpoint -> image_encoder, memory_attention, mask_decoder, memory_encoder .onnx + manifest.json",
    )
    export.add_argument("--checkpoint", required=True, help="an official SAM 2 / SAM 2.1 .pt file")
    export.add_argument("--config", help="e.g. sam2.1_hiera_tiny; recognised from the weights when omitted")
    export.add_argument("--image-size", type=int, default=1024, help="model input size: 512, 768 or 1024 (default 1024)")
    export.add_argument("--max-prompted-frames", type=int, default=2, help="prompted-frame memories per object (default 2)")
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--no-check", action="store_true", help="skip onnx.checker and the ONNX Runtime parity check")
    export.add_argument("--out", required=True, help="output folder")
    export.set_defaults(run=_export)

    from .demo import add_demo_command
    from .track_command import add_commands

    add_demo_command(commands)
    add_commands(commands)

    from streamsam.engines.cli import add_build_command  # numpy only; TensorRT loads when `build` runs

    add_build_command(commands)

    contracts = commands.add_parser("contracts", help="print the four graphs' inputs and outputs as a markdown table")
    contracts.add_argument("--onnx-dir", help="a folder written by `streamsam export` (default: the official sizes at 1024)")
    contracts.set_defaults(run=_contracts)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except StreamSamError as exc:
        print(f"streamsam {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the file system said no (disk full, permissions): its message, no traceback
        print(f"streamsam {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
