"""streamsam.export: SAM 2 / SAM 2.1 in PyTorch, official checkpoints, and the four ONNX graphs.

Needs the [export] extra (torch, onnx, onnxruntime). Import the pieces from their modules:
`streamsam.export.config`, `streamsam.export.checkpoint`, `streamsam.export.onnx_export`.
"""
