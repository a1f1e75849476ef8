"""Training of streamsam's demo model: a small SAM 2.1 (the same modules, reduced width and depth)
trained from scratch on generated videos, since no pretrained weights can be downloaded.

- `videos`: seeded videos with exact visible masks (occlusions, exits, look-alikes).
- `demo_config`: the demo model's Sam2Config.
- `prompts`, `losses`, `rollout`: SAM 2's training recipe on our graph wrappers' computations.
- `train`: the command line (`python -m training.train --out training/runs/demo --steps 3000`).
- `metrics`, `evaluate`: J&F (DAVIS) of an exported checkpoint on held-out generated videos.

Run from the repository root; needs the [export,ort,video] extras (torch, onnx, onnxruntime, OpenCV).
"""
