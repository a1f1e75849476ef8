"""Generated videos with exact masks, for training and evaluating the demo model.

A video is a textured background and a few textured shapes (ellipses, polygons, deforming blobs)
that move along smooth random paths, scale and rotate; they cross and occlude each other (a fixed
depth order), leave the frame and come back, and some of them are distractors that look like
another object (same texture family, a nearby palette, the same kind of shape). The camera pans,
the light drifts and the sensor adds noise.

Every pixel of a frame belongs to exactly one layer (the background or one object), so the masks
are exact: an object's mask is the part of it that is visible, empty when it is fully occluded or
out of the frame.

    scene = sample_scene(np.random.default_rng(seed), VideoSettings(num_frames=8))
    video = render_video(scene)           # video.frames [T, H, W, 3] uint8, video.masks [T, K, H, W] bool
    video = generate_video(seed)          # the two in one call

numpy and OpenCV only; about 70 ms for an 8-frame clip at 256 x 256.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

SHAPE_KINDS = ("ellipse", "polygon", "blob")
TEXTURE_FAMILIES = ("stripes", "checker", "noise", "dots", "gradient")
TEXTURE_SIZE = 128  # side of an object's texture image; the shape's unit radius spans half of it
_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point precision (1/16 pixel)
_BLOB_HARMONICS = (2, 3, 4, 5)


@dataclass(frozen=True)
class VideoSettings:
    """What a generated video looks like. Sizes are fractions of the frame's shorter side."""

    height: int = 256
    width: int = 256
    num_frames: int = 8
    min_objects: int = 1  # objects before distractors
    max_objects: int = 3
    max_total_objects: int = 5  # with distractors
    distractor_probability: float = 0.5  # per object: add a look-alike
    radius_range: tuple[float, float] = (0.07, 0.28)
    speed: float = 0.035  # typical path length per frame
    exit_probability: float = 0.2  # per path control point: placed outside the frame
    cross_probability: float = 0.4  # per object: its path meets an earlier object's
    segment_frames: tuple[int, int] = (5, 12)  # frames between path control points
    camouflage_probability: float = 0.1  # background in the texture family of an object
    pan_speed: float = 0.01  # camera pan per frame
    squash_range: tuple[float, float] = (1.0, 1.0)  # horizontal squash (a wide scene resized to the frame)
    noise_range: tuple[float, float] = (0.0, 6.0)  # sensor noise sigma, 0..255 units
    light_drift: float = 0.08  # amplitude of the global gain's drift

    def __post_init__(self) -> None:
        if self.height < 16 or self.width < 16 or self.num_frames < 1:
            raise ValueError(
                f"VideoSettings | received height={self.height}, width={self.width}, num_frames={self.num_frames}; "
                "expected at least 16 x 16 pixels and 1 frame"
            )
        if not 1 <= self.min_objects <= self.max_objects <= self.max_total_objects:
            raise ValueError(
                f"VideoSettings | received min_objects={self.min_objects}, max_objects={self.max_objects}, "
                f"max_total_objects={self.max_total_objects}; expected 1 <= min <= max <= max_total"
            )
        lo, hi = self.radius_range
        if not 0 < lo <= hi:
            raise ValueError(f"VideoSettings | received radius_range={self.radius_range}; expected 0 < low <= high")
        if not 0 < self.squash_range[0] <= self.squash_range[1]:
            raise ValueError(f"VideoSettings | received squash_range={self.squash_range}; expected 0 < low <= high")


@dataclass(frozen=True)
class Texture:
    """A texture family and its parameters; `render` makes the image, so a look-alike is a copy
    with jittered parameters."""

    family: str
    palette: tuple[tuple[int, int, int], ...]  # RGB colours
    period: float  # pixels of the texture image
    angle: float
    seed: int  # for the family's random parts (noise, dots)

    def render(self, height: int, width: int) -> np.ndarray:
        return render_texture(self, height, width)


@dataclass(frozen=True)
class Path:
    """Smooth motion through control points (Catmull-Rom), in frame pixels; one point every
    `segment` frames."""

    points: np.ndarray  # [n, 2] (x, y)
    segment: int

    def at(self, t: float) -> np.ndarray:
        s = t / self.segment
        i = min(int(math.floor(s)), len(self.points) - 2)
        u = s - i
        p = self.points
        p0, p1, p2, p3 = p[max(i - 1, 0)], p[i], p[i + 1], p[min(i + 2, len(p) - 1)]
        return 0.5 * (
            2 * p1 + (p2 - p0) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2 + (3 * p1 - p0 - 3 * p2 + p3) * u**3
        )


@dataclass(frozen=True)
class SceneObject:
    """One object: a unit shape in its own frame, its texture, and how it moves."""

    kind: str
    shape: np.ndarray  # [n, 2] outline of the unit shape (radius about 1); blobs deform over time
    texture: Texture
    path: Path
    radius: float  # pixels, the scale's geometric mean
    breathing: tuple[float, float, float]  # log-scale amplitude, radians per frame, phase
    angle: float
    spin: float  # radians per frame
    deform: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # blobs: [harmonic, amplitude, phase speed]
    look_alike_of: int = -1  # index of the object it imitates (-1: none)

    def outline(self, t: int) -> np.ndarray:
        """The unit outline at frame t (blobs breathe: their harmonics' phases drift)."""
        if self.kind != "blob" or not len(self.deform):
            return self.shape
        theta = np.linspace(0, 2 * np.pi, len(self.shape), endpoint=False)
        r = np.ones_like(theta)
        for k, amplitude, phase in self.deform:
            r += amplitude * np.cos(k * theta + phase * t)
        return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)

    def pose(self, t: int) -> tuple[np.ndarray, float, float]:
        """Centre (x, y) in pixels, radius in pixels and angle at frame t."""
        amplitude, rate, phase = self.breathing
        return self.path.at(t), self.radius * math.exp(amplitude * math.sin(rate * t + phase)), self.angle + self.spin * t


@dataclass(frozen=True)
class Scene:
    """Everything needed to render a video; objects are listed back to front."""

    settings: VideoSettings
    background: Texture
    pan: np.ndarray  # [2] pixels per frame
    squash: float  # horizontal squash of the whole scene
    gains: np.ndarray  # [T] global light gain
    noise: np.ndarray  # [T] noise sigma
    noise_seed: int
    objects: tuple[SceneObject, ...]


@dataclass(frozen=True)
class Video:
    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    masks: np.ndarray  # [T, K, H, W] bool, each object's visible part
    scene: Scene

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def num_objects(self) -> int:
        return self.masks.shape[1]


# -- textures


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(40, 256), rng.integers(50, 256)]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def random_texture(rng: np.random.Generator, family: str | None = None) -> Texture:
    family = family or TEXTURE_FAMILIES[rng.integers(len(TEXTURE_FAMILIES))]
    if family not in TEXTURE_FAMILIES:
        raise ValueError(f"texture | received family {family!r}; expected one of {TEXTURE_FAMILIES}")
    palette = tuple(_random_colour(rng) for _ in range(int(rng.integers(2, 4))))
    return Texture(family, palette, float(rng.uniform(6, 28)), float(rng.uniform(0, np.pi)), int(rng.integers(2**31)))


def look_alike(texture: Texture, rng: np.random.Generator) -> Texture:
    """The same family, a nearby palette and period: hard to tell apart at a glance."""
    palette = tuple(tuple(int(np.clip(c + rng.integers(-18, 19), 0, 255)) for c in colour) for colour in texture.palette)
    return Texture(
        texture.family,
        palette,
        texture.period * float(rng.uniform(0.85, 1.15)),
        texture.angle + float(rng.uniform(-0.3, 0.3)),
        int(rng.integers(2**31)),
    )


def _palette_map(values: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Values in [0, 1] -> colours interpolated along the palette: [H, W] -> [H, W, 3] uint8."""
    colours = np.asarray(palette, np.float32)
    position = np.clip(values, 0, 1) * (len(colours) - 1)
    low = np.minimum(position.astype(np.int64), len(colours) - 2)
    frac = (position - low)[..., None]
    return np.rint(colours[low] * (1 - frac) + colours[low + 1] * frac).astype(np.uint8)


def render_texture(texture: Texture, height: int, width: int) -> np.ndarray:
    """A texture image [height, width, 3] uint8."""
    rng = np.random.default_rng(texture.seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    c, s = math.cos(texture.angle), math.sin(texture.angle)
    u, v = x * c + y * s, -x * s + y * c
    period = texture.period
    if texture.family == "stripes":
        values = 0.5 + 0.5 * np.cos(2 * np.pi * u / period)
        if rng.random() < 0.4:  # plaid
            values = 0.5 * values + 0.25 + 0.25 * np.cos(2 * np.pi * v / (period * rng.uniform(0.7, 1.5)))
    elif texture.family == "checker":
        values = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
        values = cv2.GaussianBlur(values, (0, 0), 0.6)
    elif texture.family == "noise":
        noise = rng.standard_normal((height, width)).astype(np.float32)
        values = cv2.GaussianBlur(noise, (0, 0), period / 4)
        values = 0.5 + values / (4 * values.std() + 1e-6)
    elif texture.family == "dots":
        values = np.zeros((height, width), np.float32)
        count = int(height * width / period**2 * 1.5)
        centres = rng.uniform(0, [width, height], (count, 2)).astype(np.int32)
        radii = rng.uniform(period * 0.15, period * 0.4, count).astype(np.int32) + 1
        levels = rng.choice([0.5, 1.0], count)
        for (cx, cy), r, level in zip(centres, radii, levels):
            cv2.circle(values, (int(cx), int(cy)), int(r), float(level), -1, lineType=cv2.LINE_AA)
    else:  # gradient with fine grain
        values = (u - u.min()) / (u.max() - u.min() + 1e-6)
        values = values + rng.normal(0, 0.08, (height, width)).astype(np.float32)
    return _palette_map(values, texture.palette)


# -- shapes and paths


def random_shape(rng: np.random.Generator, kind: str | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    """(kind, unit outline [n, 2], blob deformation [h, 3])."""
    kind = kind or SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
    deform = np.zeros((0, 3))
    if kind == "ellipse":
        theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        aspect = rng.uniform(0.45, 1.0)
        outline = np.stack([np.cos(theta), aspect * np.sin(theta)], axis=1)
    elif kind == "polygon":
        n = int(rng.integers(3, 9))
        theta = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(0.55, 1.0, n) if rng.random() < 0.5 else np.ones(n)
        outline = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    elif kind == "blob":
        harmonics = np.asarray(_BLOB_HARMONICS, np.float64)
        deform = np.stack([harmonics, rng.uniform(0.04, 0.16, len(harmonics)) / harmonics**0.5, rng.uniform(-0.25, 0.25, len(harmonics))], axis=1)
        outline = np.zeros((64, 2))  # computed per frame by SceneObject.outline
    else:
        raise ValueError(f"shape | received kind {kind!r}; expected one of {SHAPE_KINDS}")
    return kind, outline, deform


def _control_point(rng: np.random.Generator, width: float, height: float, margin: float, exit_probability: float) -> np.ndarray:
    if rng.random() < exit_probability:
        # Outside the frame by more than the object's size, on a random side.
        side = rng.integers(4)
        along = rng.uniform(0, 1)
        out = [(-margin, along * height), (width + margin, along * height), (along * width, -margin), (along * width, height + margin)]
        return np.array(out[side], np.float64)
    return rng.uniform([0.1 * width, 0.1 * height], [0.9 * width, 0.9 * height])


def _random_path(rng: np.random.Generator, settings: VideoSettings, width: float, height: float, radius: float) -> Path:
    segment = int(rng.integers(settings.segment_frames[0], settings.segment_frames[1] + 1))
    n = settings.num_frames // segment + 2
    short = min(width, height)
    points = [_control_point(rng, width, height, 2.0 * radius + 2, settings.exit_probability / 2)]
    for _ in range(n - 1):
        # Steps of a typical length, so that speed stays in range whatever the segment.
        target = _control_point(rng, width, height, 2.0 * radius + 2, settings.exit_probability)
        step = target - points[-1]
        length = np.linalg.norm(step) + 1e-6
        wanted = settings.speed * short * segment * rng.uniform(0.3, 2.0)
        if length > wanted and not _outside(target, width, height):
            target = points[-1] + step * wanted / length
        points.append(target)
    return Path(np.asarray(points), segment)


def _outside(point: np.ndarray, width: float, height: float) -> bool:
    return not (0 <= point[0] <= width and 0 <= point[1] <= height)


def sample_scene(rng: np.random.Generator, settings: VideoSettings = VideoSettings()) -> Scene:
    """A random scene: background, objects (with look-alikes), their motion, camera and light."""
    squash = float(rng.uniform(*settings.squash_range))
    width, height = settings.width * squash, float(settings.height)  # the scene before squashing
    short = min(settings.width, settings.height)
    count = int(rng.integers(settings.min_objects, settings.max_objects + 1))
    objects: list[SceneObject] = []
    for _ in range(count):
        objects.append(_random_object(rng, settings, width, height, short))
    for index in range(count):
        if len(objects) < settings.max_total_objects and rng.random() < settings.distractor_probability:
            objects.append(_look_alike_object(rng, settings, objects[index], index, width, height))
    # Paths that meet: an object passes where an earlier one is at one of its control points.
    for j in range(1, len(objects)):
        if rng.random() < settings.cross_probability:
            i = int(rng.integers(j))
            a, b = objects[i].path, objects[j].path
            m = int(rng.integers(len(b.points)))
            meet = a.at(min(m * b.segment, settings.num_frames - 1)) + rng.normal(0, 0.05 * short, 2)
            points = b.points.copy()
            points[m] = meet
            objects[j] = dataclasses.replace(objects[j], path=Path(points, b.segment))
    order = rng.permutation(len(objects))  # depth: back to front
    objects = [objects[i] for i in order]
    remap = {int(old): new for new, old in enumerate(order)}
    objects = [dataclasses.replace(o, look_alike_of=remap.get(o.look_alike_of, -1)) for o in objects]

    if rng.random() < settings.camouflage_probability and objects:
        background = look_alike(objects[int(rng.integers(len(objects)))].texture, rng)
    else:
        background = random_texture(rng)
    background = dataclasses.replace(background, period=background.period * float(rng.uniform(1.0, 2.5)))
    t = np.arange(settings.num_frames)
    gains = 1.0 + settings.light_drift * np.sin(rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
    noise = np.full(settings.num_frames, rng.uniform(*settings.noise_range))
    pan = rng.normal(0, settings.pan_speed * short, 2)
    return Scene(settings, background, pan, squash, gains, noise, int(rng.integers(2**31)), tuple(objects))


def _random_object(rng: np.random.Generator, settings: VideoSettings, width: float, height: float, short: int) -> SceneObject:
    kind, outline, deform = random_shape(rng)
    radius = float(rng.uniform(*settings.radius_range)) * short
    return SceneObject(
        kind=kind,
        shape=outline,
        texture=random_texture(rng),
        path=_random_path(rng, settings, width, height, radius),
        radius=radius,
        breathing=_breathing(rng),
        angle=float(rng.uniform(0, 2 * np.pi)),
        spin=float(rng.normal(0, 0.06)),
        deform=deform,
    )


def _breathing(rng: np.random.Generator) -> tuple[float, float, float]:
    """Scale changes: up to about +-35 %, a few tens of frames per cycle."""
    return float(rng.uniform(0, 0.3)), float(rng.uniform(0.05, 0.25)), float(rng.uniform(0, 2 * np.pi))


def _look_alike_object(
    rng: np.random.Generator, settings: VideoSettings, model: SceneObject, index: int, width: float, height: float
) -> SceneObject:
    kind, outline, deform = random_shape(rng, model.kind)
    radius = model.radius * float(rng.uniform(0.75, 1.3))
    return SceneObject(
        kind=kind,
        shape=outline,
        texture=look_alike(model.texture, rng),
        path=_random_path(rng, settings, width, height, radius),
        radius=radius,
        breathing=_breathing(rng),
        angle=float(rng.uniform(0, 2 * np.pi)),
        spin=float(rng.normal(0, 0.06)),
        deform=deform,
        look_alike_of=index,
    )


# -- rendering


def _object_affine(obj: SceneObject, t: int, squash: float) -> np.ndarray:
    """2x3 affine from the unit shape's frame to frame pixels."""
    centre, radius, angle = obj.pose(t)
    c, s = math.cos(angle) * radius, math.sin(angle) * radius
    rotate_scale = np.array([[c, -s], [s, c]])
    squash_matrix = np.diag([1.0 / squash, 1.0])
    linear = squash_matrix @ rotate_scale
    offset = squash_matrix @ centre
    return np.concatenate([linear, offset[:, None]], axis=1)


def silhouette(obj: SceneObject, t: int, height: int, width: int, squash: float = 1.0) -> np.ndarray:
    """The object's full (amodal) mask at frame t: [height, width] bool."""
    affine = _object_affine(obj, t, squash)
    outline = obj.outline(t) @ affine[:, :2].T + affine[:, 2]
    mask = np.zeros((height, width), np.uint8)
    # Pixel (i, j) covers [j, j+1) x [i, i+1); fillPoly samples pixel centres at integer coords.
    points = np.round((outline - 0.5) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return mask.astype(bool)


def render_video(scene: Scene) -> Video:
    """Frames and exact visible masks of a scene."""
    st = scene.settings
    h, w, count = st.height, st.width, len(scene.objects)
    frames = np.empty((st.num_frames, h, w, 3), np.uint8)
    masks = np.zeros((st.num_frames, count, h, w), bool)
    margin = int(np.ceil(np.abs(scene.pan).max() * st.num_frames)) + 4
    back_h, back_w = h + 2 * margin, int(np.ceil(w * scene.squash)) + 2 * margin
    background = scene.background.render(back_h, back_w)
    textures = [o.texture.render(TEXTURE_SIZE, TEXTURE_SIZE) for o in scene.objects]
    # Texture pixels -> unit shape frame: the unit radius spans a quarter of the texture image.
    tex_to_unit = np.array([[4.0 / TEXTURE_SIZE, 0, -2.0], [0, 4.0 / TEXTURE_SIZE, -2.0], [0, 0, 1]])
    noise_rng = np.random.default_rng(scene.noise_seed)
    for t in range(st.num_frames):
        shift = scene.pan * t
        back_affine = np.array([[1.0 / scene.squash, 0, -(margin + shift[0]) / scene.squash], [0, 1.0, -(margin + shift[1])]])
        frame = cv2.warpAffine(background, back_affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        covered = np.zeros((h, w), bool)
        full = [silhouette(o, t, h, w, scene.squash) for o in scene.objects]
        for k in range(count - 1, -1, -1):  # front to back: what is in front hides the rest
            masks[t, k] = full[k] & ~covered
            covered |= full[k]
        for k, obj in enumerate(scene.objects):  # back to front
            if not masks[t, k].any():
                continue
            affine = np.vstack([_object_affine(obj, t, scene.squash), [0, 0, 1]]) @ tex_to_unit
            warped = cv2.warpAffine(textures[k], affine[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            frame[masks[t, k]] = warped[masks[t, k]]
        values = frame.astype(np.float32) * scene.gains[t]
        if scene.noise[t] > 0:
            values += noise_rng.standard_normal(values.shape, dtype=np.float32) * scene.noise[t]
        frames[t] = np.clip(values, 0, 255).astype(np.uint8)
    return Video(frames, masks, scene)


def generate_video(seed: int | tuple[int, ...], settings: VideoSettings = VideoSettings()) -> Video:
    """The video of a seed (an int or a tuple of non-negative ints, numpy's SeedSequence entropy):
    the same seed and settings give the same frames and masks."""
    return render_video(sample_scene(np.random.default_rng(seed), settings))
