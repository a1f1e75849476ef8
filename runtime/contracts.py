"""The graph contracts: the one place that says what each of the four graphs takes and gives.

The exporter names its ONNX inputs and outputs from here, the runtime allocates its buffers from here,
the engine builder derives its TensorRT profiles from here, and the tests and the README table read it
too. Shapes mix fixed sizes (ints, from the model's dimensions) and symbolic axes:

- `frames`: the frames of one call (one per stream: the multi-stream step encodes every stream's
  frame in one image-encoder call; a single stream passes 1);
- `objects`: the batch of tracked objects, of any of the call's frames: `row_frame` [objects] says
  which frame's features each row reads (0 for a single stream);
- `points`: prompt points per object (clicks, box corners as labels 2/3, padding as -1).

Memory attention takes a fixed number of memory and pointer slots with validity flags, so a
preallocated ring can be passed as it is: empty slots are masked out of the attention.
"""

from __future__ import annotations

from dataclasses import dataclass

FRAMES = "frames"
OBJECTS = "objects"
POINTS = "points"
MEMORY_SLOTS = "memory_slots"
POINTER_SLOTS = "pointer_slots"

# Prompt point labels, as SAM's prompt encoder reads them.
LABEL_PADDING = -1
LABEL_NEGATIVE = 0
LABEL_POSITIVE = 1
LABEL_BOX_TOP_LEFT = 2
LABEL_BOX_BOTTOM_RIGHT = 3

# Mask logits of an object judged absent (the official NO_OBJ_SCORE).
NO_OBJECT_LOGIT = -1024.0

IMAGE_ENCODER = "image_encoder"
MEMORY_ATTENTION = "memory_attention"
MASK_DECODER = "mask_decoder"
MEMORY_ENCODER = "memory_encoder"
GRAPH_NAMES = (IMAGE_ENCODER, MEMORY_ATTENTION, MASK_DECODER, MEMORY_ENCODER)

# ImageNet statistics the image encoder was trained with, on 0..1 RGB.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelDims:
    """The sizes a set of graphs was exported with (written to and read from the manifest)."""

    image_size: int
    d_model: int
    mem_dim: int
    num_maskmem: int
    memory_slots: int  # prompted-frame memories + (num_maskmem - 1) recent frames
    pointer_slots: int  # prompted-frame pointers + (max_obj_ptrs_in_encoder - 1) recent frames

    def __post_init__(self) -> None:
        if self.image_size % 16 or self.d_model % self.mem_dim:
            raise ValueError(
                f"ModelDims | received image_size={self.image_size}, d_model={self.d_model}, "
                f"mem_dim={self.mem_dim}; expected image_size divisible by 16 and d_model by mem_dim"
            )
        if self.memory_slots < self.num_maskmem or self.pointer_slots < 1:
            raise ValueError(
                f"ModelDims | received memory_slots={self.memory_slots}, pointer_slots={self.pointer_slots}; "
                f"expected memory_slots >= num_maskmem ({self.num_maskmem}) and pointer_slots >= 1"
            )

    @property
    def feat_size(self) -> int:
        return self.image_size // 16

    @property
    def low_res_size(self) -> int:
        return self.image_size // 4

    @property
    def max_prompted_frames(self) -> int:
        return self.memory_slots - (self.num_maskmem - 1)

    @property
    def slot_capacity(self) -> dict[str, int]:
        """The slot axes at their capacity: what buffers allocated once are sized for."""
        return {MEMORY_SLOTS: self.memory_slots, POINTER_SLOTS: self.pointer_slots}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | str, ...]

    def concrete_shape(self, **axes: int) -> tuple[int, ...]:
        """The shape with symbolic axes filled in, e.g. `objects=2, points=3`."""
        missing = [a for a in self.shape if isinstance(a, str) and a not in axes]
        if missing:
            raise ValueError(f"{self.name} | received axes {sorted(axes)}; expected values for {missing}")
        return tuple(axes[a] if isinstance(a, str) else a for a in self.shape)


@dataclass(frozen=True)
class GraphContract:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def axes(self) -> set[str]:
        """The symbolic axes its inputs and outputs use."""
        return {a for spec in self.inputs + self.outputs for a in spec.shape if isinstance(a, str)}

    def tensor(self, name: str) -> TensorSpec:
        for spec in self.inputs + self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} | received tensor name {name!r}; expected one of {self.input_names + self.output_names}")


def graph_contracts(dims: ModelDims) -> dict[str, GraphContract]:
    """The four graphs' inputs and outputs for models of these dimensions."""
    s, d, mem, g, lr = dims.image_size, dims.d_model, dims.mem_dim, dims.feat_size, dims.low_res_size
    f32, i32, b = "float32", "int32", "bool"
    high_res_0 = TensorSpec("high_res_feats_0", f32, (FRAMES, d // 8, 4 * g, 4 * g))
    high_res_1 = TensorSpec("high_res_feats_1", f32, (FRAMES, d // 4, 2 * g, 2 * g))
    image_embed = TensorSpec("image_embed", f32, (FRAMES, d, g, g))
    row_frame = TensorSpec("row_frame", i32, (OBJECTS,))  # which of the call's frames each row reads
    contracts = [
        GraphContract(
            IMAGE_ENCODER,
            inputs=(TensorSpec("image", f32, (FRAMES, 3, s, s)),),
            outputs=(high_res_0, high_res_1, image_embed),
        ),
        GraphContract(
            MEMORY_ATTENTION,
            inputs=(
                image_embed,
                TensorSpec("memory", f32, (OBJECTS, MEMORY_SLOTS, mem, g, g)),
                # temporal distance of each memory: 0 for prompted frames, 1..num_maskmem-1 for recent ones
                TensorSpec("memory_tpos", i32, (OBJECTS, MEMORY_SLOTS)),
                TensorSpec("memory_valid", b, (OBJECTS, MEMORY_SLOTS)),
                TensorSpec("obj_ptrs", f32, (OBJECTS, POINTER_SLOTS, d)),
                # signed frame distance of each pointer divided by (max pointers - 1), as the official code
                TensorSpec("obj_ptr_tpos", f32, (OBJECTS, POINTER_SLOTS)),
                TensorSpec("obj_ptr_valid", b, (OBJECTS, POINTER_SLOTS)),
                row_frame,
            ),
            outputs=(TensorSpec("conditioned_embed", f32, (OBJECTS, d, g, g)),),
        ),
        GraphContract(
            MASK_DECODER,
            inputs=(
                TensorSpec("conditioned_embed", f32, (OBJECTS, d, g, g)),
                high_res_0,
                high_res_1,
                # pixel coordinates in the model's input frame (0..image_size)
                TensorSpec("point_coords", f32, (OBJECTS, POINTS, 2)),
                TensorSpec("point_labels", i32, (OBJECTS, POINTS)),
                TensorSpec("mask_input", f32, (OBJECTS, 1, lr, lr)),
                TensorSpec("has_mask_input", f32, (OBJECTS, 1)),
                TensorSpec("multimask_output", b, (OBJECTS,)),
                row_frame,
            ),
            outputs=(
                TensorSpec("low_res_multimasks", f32, (OBJECTS, 3, lr, lr)),
                TensorSpec("multimask_ious", f32, (OBJECTS, 3)),
                TensorSpec("low_res_masks", f32, (OBJECTS, 1, lr, lr)),
                # the chosen mask upsampled to the model's input size: the memory encoder's input
                TensorSpec("high_res_masks", f32, (OBJECTS, 1, s, s)),
                TensorSpec("ious", f32, (OBJECTS, 1)),
                TensorSpec("obj_ptr", f32, (OBJECTS, d)),
                TensorSpec("object_score_logits", f32, (OBJECTS, 1)),
            ),
        ),
        GraphContract(
            MEMORY_ENCODER,
            inputs=(
                image_embed,
                TensorSpec("high_res_masks", f32, (OBJECTS, 1, s, s)),
                TensorSpec("object_score_logits", f32, (OBJECTS, 1)),
                TensorSpec("is_mask_from_pts", b, (OBJECTS,)),
                row_frame,
            ),
            outputs=(TensorSpec("maskmem_features", f32, (OBJECTS, mem, g, g)),),
        ),
    ]
    return {c.name: c for c in contracts}


# The official model's sizes: SAM 2.1 tiny (and every other size) at 1024, two prompted frames.
DEFAULT_DIMS = ModelDims(image_size=1024, d_model=256, mem_dim=64, num_maskmem=7, memory_slots=8, pointer_slots=17)


def markdown_table(dims: ModelDims) -> str:
    """The contracts as the README's table (a test keeps the README in step with this module)."""
    rows = ["| graph | input | output |", "|---|---|---|"]

    capacity = dims.slot_capacity

    def fmt(spec: TensorSpec) -> str:
        axes = (f"{a} <= {capacity[a]}" if a in capacity else str(a) for a in spec.shape)
        return f"`{spec.name}` {spec.dtype} [{', '.join(axes)}]"

    for contract in graph_contracts(dims).values():
        rows.append(
            f"| {contract.name} | {'<br>'.join(fmt(s) for s in contract.inputs)} | {'<br>'.join(fmt(s) for s in contract.outputs)} |"
        )
    return "\n".join(rows)

