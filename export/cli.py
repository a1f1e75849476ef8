"""The `streamsam export` subcommand, beside the exporter it runs. Importing this module loads
nothing beyond `import streamsam` (numpy); torch is imported when the command runs."""

from __future__ import annotations

import argparse


def _export(args: argparse.Namespace) -> None:
    from streamsam.errors import require

    require("torch", "export")
    from .onnx_export import ExportOptions, export_checkpoint

    export_checkpoint(
        args.checkpoint,
        args.out,
        config=args.config,
        image_size=args.image_size,
        options=ExportOptions(opset=args.opset, max_prompted_frames=args.max_prompted_frames, check=not args.no_check),
    )
    print(f"wrote {args.out}/manifest.json and four graphs")


def add_export_command(commands) -> None:
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
