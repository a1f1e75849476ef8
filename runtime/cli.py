"""The `streamsam` command. Each subcommand imports what it needs when it runs, so `--help` and
the lean commands work without torch."""

from __future__ import annotations

import argparse
import sys

from .errors import StreamSamError


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

    from streamsam.export.cli import add_export_command  # numpy only; torch loads when `export` runs

    add_export_command(commands)

    from .demo import add_demo_command
    from .track_command import add_commands

    add_demo_command(commands)
    add_commands(commands)

    from .serve.command import add_serve_command  # numpy only; Ray loads when `serve` runs

    add_serve_command(commands)

    from .quantize import add_quantize_command

    add_quantize_command(commands)

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
