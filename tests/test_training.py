"""The demo model's training code: generated videos, prompts, losses, the rollout's memory rules,
a few training steps that write a loadable checkpoint, J&F on known cases, and the evaluation
through the runtime (with memory on and off)."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import numpy as np
import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO))  # `training` is a top-level folder of the repository, not installed

from training.metrics import boundary_map, bound_radius, contour_accuracy, region_similarity, video_scores  # noqa: E402
from training.prompts import center_clicks, error_clicks, noisy_box_points, tight_boxes  # noqa: E402
from training.videos import (  # noqa: E402
    Path as MotionPath,
    Scene,
    SceneObject,
    Texture,
    VideoSettings,
    generate_video,
    render_video,
    sample_scene,
    silhouette,
)

SMALL = VideoSettings(height=64, width=80, num_frames=6)


# -- generated videos


def test_videos_are_determined_by_their_seed():
    a, b, c = generate_video(3, SMALL), generate_video(3, SMALL), generate_video(4, SMALL)
    assert a.frames.dtype == np.uint8 and a.frames.shape == (6, 64, 80, 3)
    assert a.masks.dtype == bool and a.masks.shape == (6, a.num_objects, 64, 80)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.frames, c.frames)


def test_visible_masks_are_disjoint_and_what_is_in_front_wins():
    settings = dataclasses.replace(SMALL, min_objects=3, max_objects=3, cross_probability=1.0, radius_range=(0.2, 0.35))
    for seed in range(4):
        video = generate_video(seed, settings)
        scene = video.scene
        # At most one object owns a pixel.
        assert (video.masks.sum(axis=1) <= 1).all()
        for t in range(video.num_frames):
            full = [silhouette(o, t, settings.height, settings.width, scene.squash) for o in scene.objects]
            for k in range(video.num_objects):
                in_front = np.zeros_like(full[k])
                for j in range(k + 1, video.num_objects):  # objects are listed back to front
                    in_front |= full[j]
                np.testing.assert_array_equal(video.masks[t, k], full[k] & ~in_front)


def _flat(colour) -> Texture:
    return Texture("stripes", (colour, colour), 10.0, 0.0, 0)


def _scene(objects, settings) -> Scene:
    t = settings.num_frames
    return Scene(settings, _flat((0, 0, 0)), np.zeros(2), 1.0, np.ones(t), np.zeros(t), 0, tuple(objects))


def _square(centres, radius, colour, segment=1) -> SceneObject:
    """A flat-coloured square of side 2 * radius, its centre at centres[t] on frame t."""
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    return SceneObject("polygon", square, _flat(colour), MotionPath(np.asarray(centres, float), segment), radius, (0.0, 0.1, 0.0), 0.0, 0.0)


def test_frames_are_exactly_the_masks_colours():
    """With flat colours and no noise, each frame is its masks painted in the objects' colours."""
    settings = dataclasses.replace(SMALL, num_frames=4)
    back = _square([[10, 30], [30, 30], [50, 30], [60, 30], [60, 30]], 9, (200, 40, 40))
    front = _square([[60, 30]] * 5, 14, (40, 200, 40))
    video = render_video(_scene([back, front], settings))
    colours = np.array([[200, 40, 40], [40, 200, 40]], np.uint8)
    expected = np.einsum("tkhw,kc->thwc", video.masks.astype(np.int64), colours.astype(np.int64)).astype(np.uint8)
    np.testing.assert_array_equal(video.frames, expected)
    # The back square slides under the front one: whole, partly, then fully hidden; the front
    # square stays whole (OpenCV's rasterisation gives a 2r square 2r + 1 pixels).
    areas = video.masks[:, 0].sum(axis=(1, 2))
    assert areas[0] == areas[1] == 19 * 19 and 0 < areas[2] < areas[1] and areas[3] == 0
    assert video.masks[:, 1].sum(axis=(1, 2)).tolist() == [29 * 29] * 4


def test_an_object_out_of_the_frame_has_an_empty_mask_and_comes_back():
    settings = dataclasses.replace(SMALL, num_frames=5)
    leaving = _square([[40, 30], [40, -40], [40, -40], [40, 30], [40, 30], [40, 30]], 8, (255, 255, 255))
    video = render_video(_scene([leaving], settings))
    areas = video.masks[:, 0].sum(axis=(1, 2))
    assert areas[0] == areas[3] == 17 * 17 and areas[1] == areas[2] == 0


def test_look_alikes_share_the_texture_family():
    settings = dataclasses.replace(SMALL, min_objects=2, max_objects=2, max_total_objects=4, distractor_probability=1.0)
    scene = sample_scene(np.random.default_rng(0), settings)
    alikes = [o for o in scene.objects if o.look_alike_of >= 0]
    assert len(alikes) == 2
    for obj in alikes:
        model = scene.objects[obj.look_alike_of]
        assert model.look_alike_of == -1 and obj.texture.family == model.texture.family and obj.kind == model.kind


def test_video_settings_are_checked():
    with pytest.raises(ValueError, match="received min_objects=3, max_objects=2"):
        VideoSettings(min_objects=3, max_objects=2)


# -- prompts


def test_error_clicks_are_positive_in_misses_and_negative_in_overflow():
    rng = np.random.default_rng(0)
    target = np.zeros((2, 20, 20), bool)
    target[:, 5:15, 5:15] = True
    prediction = np.zeros_like(target)
    prediction[0, 5:15, 5:10] = True  # object 0: right half missed
    prediction[1] = target[1]
    prediction[1, 0:3, 0:3] = True  # object 1: overflow in a corner
    for _ in range(20):
        points, labels = error_clicks(rng, target, prediction)
        x, y = points[0, 0].astype(int)
        assert labels[0, 0] == 1 and target[0, y, x] and not prediction[0, y, x]
        x, y = points[1, 0].astype(int)
        assert labels[1, 0] == 0 and prediction[1, y, x] and not target[1, y, x]
    points, labels = error_clicks(rng, target, None)  # no prediction: a click on the object
    assert (labels == 1).all() and target[0, int(points[0, 0, 1]), int(points[0, 0, 0])]


def test_boxes_and_centre_clicks():
    target = np.zeros((1, 40, 50), bool)
    target[0, 10:21, 5:16] = True
    np.testing.assert_array_equal(tight_boxes(target), [[5, 10, 16, 21]])
    points, labels = noisy_box_points(np.random.default_rng(1), target)
    assert labels.tolist() == [[2, 3]] and (points[0, 1] > points[0, 0]).all()
    assert np.abs(points[0].reshape(-1) - [5, 10, 16, 21]).max() <= 20 / 1024 * 50 + 1e-5
    points, labels = center_clicks(target)
    assert labels.tolist() == [[1]] and points[0, 0].tolist() == [10, 15]


# -- J&F


def _square_mask(h, w, y0, x0, side):
    mask = np.zeros((h, w), bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def test_j_and_f_of_identical_disjoint_and_empty_masks():
    a = _square_mask(100, 100, 20, 20, 30)
    far = _square_mask(100, 100, 60, 60, 30)
    empty = np.zeros_like(a)
    assert region_similarity(a, a) == contour_accuracy(a, a) == 1.0
    assert region_similarity(a, far) == contour_accuracy(a, far) == 0.0
    assert region_similarity(empty, empty) == contour_accuracy(empty, empty) == 1.0
    assert region_similarity(a, empty) == contour_accuracy(a, empty) == contour_accuracy(empty, a) == 0.0


def test_f_of_a_shifted_square_matches_the_hand_count():
    """A 30-pixel square moved 10 pixels right in a 100 x 100 frame. The tolerance is
    ceil(0.008 * 141.4) = 2 pixels. Each boundary (DAVIS's seg2bmap) has 4 * 30 = 120 pixels; of the
    moved one, 2 * (30 - 10 + 2 + 1) = 46 on the top and bottom rows lie within 2 pixels of the
    original's, and 2 * 2 on its left side near the corners: precision = recall = F = 50 / 120.
    J = 30 * 20 / (2 * 900 - 600) = 0.5."""
    gt = _square_mask(100, 100, 20, 20, 30)
    pred = _square_mask(100, 100, 20, 30, 30)
    assert bound_radius(100, 100) == 2
    assert boundary_map(gt).sum() == boundary_map(pred).sum() == 120
    assert region_similarity(gt, pred) == pytest.approx(0.5)
    assert contour_accuracy(gt, pred) == pytest.approx(50 / 120)


def test_video_scores_skip_the_prompted_frame():
    gt = np.stack([_square_mask(50, 50, 10, 10, 20)] * 3)
    pred = gt.copy()
    pred[0] = False  # the prompted frame is not evaluated
    pred[2] = np.roll(gt[2], 25, axis=1)  # nothing in common
    scores = video_scores(gt, pred, skip_frames=(0,))
    assert scores.frames == 2 and scores.j == pytest.approx(0.5) and scores.j_and_f == pytest.approx(0.5)


# -- the model side


def test_memory_selection_follows_the_official_rules():
    from training.rollout import FrameMemory, select_memories

    def mem(tag):
        return FrameMemory(torch.full((1,), float(tag)), torch.full((1,), float(tag)))

    cond = {3: mem(3)}
    non_cond = {t: mem(t) for t in (4, 5, 6, 2, 1, 0)}
    memories, pointers = select_memories(7, 1, cond, non_cond, num_frames=8, num_maskmem=7, max_obj_ptrs=16)
    assert [(float(m[0]), t) for m, t in memories] == [(3, 0), (6, 1), (5, 2), (4, 3), (2, 5), (1, 6)]
    assert [(float(p[0]), round(t * 7, 6)) for p, t in pointers] == [(3, 4), (6, 1), (5, 2), (4, 3), (2, 5), (1, 6), (0, 7)]
    # In reverse, from frame 2: the prompted frame is in the past of the travel, frames 4..6 are behind.
    memories, pointers = select_memories(2, -1, cond, non_cond, num_frames=8, num_maskmem=7, max_obj_ptrs=16)
    assert [(float(m[0]), t) for m, t in memories] == [(3, 0), (4, 2), (5, 3), (6, 4)]
    assert [float(p[0]) for p, _ in pointers] == [3, 4, 5, 6]
    # Forward from frame 1, a prompted frame in the future gives its memory but not its pointer.
    _, pointers = select_memories(1, 1, cond, {0: mem(0)}, num_frames=8, num_maskmem=7, max_obj_ptrs=16)
    assert [float(p[0]) for p, _ in pointers] == [0]


def test_demo_config_is_the_proposed_size():
    from streamsam.export.config import CONFIGS
    from streamsam.export.modeling.sam2_model import Sam2Model
    from training.demo_config import DEMO_CONFIG, get_training_config

    with torch.device("meta"):
        model = Sam2Model(DEMO_CONFIG)
    assert 4.0e6 < sum(p.numel() for p in model.parameters()) < 4.6e6
    assert DEMO_CONFIG.feat_size == 16 and DEMO_CONFIG.obj_ptr_tokens == 4
    if "demo" in CONFIGS:  # once registered, the registered one is this one
        assert CONFIGS["demo"] == DEMO_CONFIG
    assert get_training_config("demo") == DEMO_CONFIG


@pytest.mark.parametrize("name", ["demo_384", "demo_512"])
def test_the_demo_model_at_a_larger_input_keeps_its_weights_and_its_global_stages(name):
    """The demo weights load unchanged at 384 or 512 (train.py --init, then fine-tuning there), and
    the last two Hiera stages still attend over their whole grid, as they do at 256."""
    from streamsam.export.config import BACKBONE_STRIDE
    from streamsam.export.modeling.sam2_model import Sam2Model
    from training.demo_config import DEMO_CONFIG, get_training_config

    config = get_training_config(name)
    assert config.image_size == int(name.split("_")[1]) and config.d_model == DEMO_CONFIG.d_model
    for c in (config, DEMO_CONFIG):  # the stride-16 and stride-32 grids are one window each
        assert c.hiera.window_spec[2:] == (c.image_size // BACKBONE_STRIDE, c.image_size // (2 * BACKBONE_STRIDE))
    with torch.device("meta"):
        small, large = Sam2Model(DEMO_CONFIG).state_dict(), Sam2Model(config).state_dict()
    assert {k: v.shape for k, v in small.items()} == {k: v.shape for k, v in large.items()}


def test_losses_prefer_the_best_multimask_output_and_ignore_masks_of_absent_objects():
    from training.losses import step_losses

    target = torch.zeros(2, 16, 16)
    target[0, 4:12, 4:12] = 1  # object 1 is absent
    good = (target[0] * 20 - 10)[None, None]
    bad = -good
    masks = torch.cat([torch.cat([bad, good, bad], 1), torch.cat([bad, good, bad], 1)])  # [2, 3, 16, 16]
    ious = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    scores = torch.tensor([[10.0], [-10.0]])
    terms = step_losses(masks, ious, scores, target)
    assert float(terms.dice) < 0.01 and float(terms.focal) < 1e-4 and float(terms.score) < 1e-3
    assert float(terms.iou) == pytest.approx(0.0, abs=1e-6)  # predicted IoUs equal the actual ones


def test_absent_objects_can_teach_an_empty_mask_and_weigh_more_in_the_score():
    """--absent-mask-weight pushes an absent object's mask to empty (SAM 2 leaves it to the score);
    --absent-score-weight scales that object's score BCE and leaves a present one's alone."""
    from training.losses import LossWeights, step_losses

    target = torch.zeros(2, 16, 16)
    target[0, 4:12, 4:12] = 1  # object 1 is absent
    present_mask = (target[0] * 20 - 10)[None, None].expand(1, 3, -1, -1)
    masks = torch.cat([present_mask, torch.full((1, 3, 16, 16), 5.0)])  # object 1 predicted everywhere
    ious, scores = torch.tensor([[1.0] * 3, [0.0] * 3]), torch.tensor([[10.0], [2.0]])
    official = step_losses(masks, ious, scores, target)
    weighted = step_losses(masks, ious, scores, target, LossWeights(absent_mask=1.0, absent_score=4.0))
    assert float(official.dice) < 0.01 and float(weighted.dice) > 0.4  # the full mask on an absent object now costs
    assert float(weighted.focal) > float(official.focal) + 0.1
    bce_absent = float(torch.nn.functional.softplus(torch.tensor(2.0))) / 2  # divided by the 2 objects
    assert float(official.score) == pytest.approx(bce_absent, rel=1e-3)
    assert float(weighted.score) == pytest.approx(4 * bce_absent, rel=1e-3)
    empty = torch.cat([present_mask, torch.full((1, 3, 16, 16), -10.0)])
    assert float(step_losses(empty, ious, scores, target, LossWeights(absent_mask=1.0)).dice) < 0.01


def test_loss_weights_choose_the_best_mask_and_weigh_the_total():
    from training.losses import LossWeights, step_losses

    target = torch.zeros(1, 16, 16)
    target[0, 4:12, 4:12] = 1
    exact = target[0] * 20 - 10
    # Output 0 overflows by 16 pixels, output 1 misses half the object (32 pixels): focal (alpha 0.25)
    # charges overflow 3x a miss, so weighted 20 it prefers the miss; dice alone prefers the overflow.
    overflow = exact.clone()
    overflow[12:14, 4:12] = 10
    miss = exact.clone()
    miss[4:8, 4:12] = -10
    masks = torch.stack([overflow, miss, miss])[None]
    ious, scores = torch.zeros(1, 3), torch.full((1, 1), 10.0)
    official, dice_only = LossWeights(), LossWeights(focal=0.0)
    a = step_losses(masks, ious, scores, target, official)
    b = step_losses(masks, ious, scores, target, dice_only)
    assert float(b.dice) < float(a.dice)  # each weighting picked a different output
    terms = a.as_floats(official)
    assert terms["total"] == pytest.approx(20 * terms["focal"] + terms["dice"] + terms["iou"] + terms["score"], rel=1e-5)


def test_tied_decoder_init_starts_cross_attention_with_equal_query_and_key_projections():
    from training.demo_config import DEMO_CONFIG
    from training.train import new_model

    plain, tied = new_model(DEMO_CONFIG, 0), new_model(DEMO_CONFIG, 0, decoder_qk_tie=2.0)
    transformer = tied.sam_mask_decoder.transformer
    attentions = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        attentions += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    for attention in attentions:
        assert torch.equal(attention.q_proj.weight, attention.k_proj.weight)
        assert not attention.q_proj.bias.any() and not attention.k_proj.bias.any()
    # Only those projections differ from the plain init; the self-attention keeps its own.
    plain_state, tied_state = plain.state_dict(), tied.state_dict()
    changed = {k for k in plain_state if not torch.equal(plain_state[k], tied_state[k])}
    assert changed and all(("cross_attn" in k or "final_attn" in k) and ("q_proj" in k or "k_proj" in k) for k in changed)
    self_attention = transformer.layers[0].self_attn
    assert not torch.equal(self_attention.q_proj.weight, self_attention.k_proj.weight)


def test_the_wide_experiments_are_the_demo_model_widened_and_stay_out_of_the_export_registry():
    """training's experiment configs (session 9): the demo model with the official tracker width;
    the same modules and depths, and `streamsam export` does not know them until one ships."""
    from streamsam.export.config import get_config
    from streamsam.export.modeling.sam2_model import Sam2Model
    from training.demo_config import DEMO_CONFIG, get_training_config

    wide, tracker = get_training_config("demo_wide"), get_training_config("demo_wide_tracker")
    for config in (wide, tracker):
        assert (config.d_model, config.mem_dim, config.obj_ptr_tokens) == (256, 64, 4)
        assert config.hiera.stages == DEMO_CONFIG.hiera.stages and config.memory_attention_layers == DEMO_CONFIG.memory_attention_layers
        with pytest.raises(KeyError, match=config.name):
            get_config(config.name)
    assert wide.hiera.embed_dim == 48 and tracker.hiera == DEMO_CONFIG.hiera
    assert get_training_config("demo_wide", 320).image_size == 320
    with torch.device("meta"):
        assert Sam2Model(wide).state_dict().keys() == Sam2Model(DEMO_CONFIG).state_dict().keys()


def test_a_few_training_steps_write_a_checkpoint_that_loads_strictly(tmp_path):
    from streamsam.export.checkpoint import load_checkpoint, read_state_dict
    from training import train

    out = tmp_path / "run"
    final = train.main([
        "--out", str(out), "--steps", "3", "--config", "reduced", "--frames", "3", "--max-objects", "2",
        "--max-correction-clicks", "2", "--checkpoint-every", "2", "--log-every", "1", "--val-clips", "1",
    ])
    assert final == out / "model.pt"
    for name in ("checkpoint_000002.pt", "checkpoint_000003.pt", "model.pt", "model_fp16.pt", "train_state.pt"):
        assert (out / name).is_file(), name
    model = load_checkpoint(final, config="reduced", image_size=256)  # strict: every key, every shape
    state = read_state_dict(final)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    half = load_checkpoint(out / "model_fp16.pt", config="reduced", image_size=256)
    weight = "sam_mask_decoder.iou_token.weight"
    torch.testing.assert_close(half.state_dict()[weight], model.state_dict()[weight], rtol=1e-3, atol=1e-4)
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["seed"] == 0 and recipe["steps"] == 3 and recipe["config"]["name"] == "reduced"
    assert recipe["videos"]["num_frames"] == 3 and recipe["progress"]["step"] == 3
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    # Resuming a finished run trains nothing more and writes the same final weights.
    train.main(["--out", str(out), "--steps", "3", "--config", "reduced", "--frames", "3", "--resume", "--val-clips", "0"])
    torch.testing.assert_close(read_state_dict(final)[weight], state[weight], rtol=0, atol=0)


def test_training_is_determined_by_its_seed(tmp_path):
    from streamsam.export.checkpoint import read_state_dict
    from training import train

    def run(name, seed):
        args = ["--steps", "1", "--config", "reduced", "--frames", "2", "--max-objects", "1", "--max-correction-clicks", "1",
                "--val-clips", "0", "--seed", str(seed)]
        return read_state_dict(train.main(["--out", str(tmp_path / name)] + args))

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_second_phase_starts_from_the_first_phases_weights_and_records_its_recipe(tmp_path):
    """A curriculum (e.g. single images first, then videos): --init loads the weights, with a fresh
    optimizer; the second run's recipe keeps the first's."""
    from streamsam.export.checkpoint import read_state_dict
    from training import train

    args = ["--steps", "1", "--config", "reduced", "--frames", "2", "--max-objects", "1", "--max-correction-clicks", "1", "--val-clips", "0"]
    first = train.main(["--out", str(tmp_path / "first"), "--image-fraction", "1"] + args)
    zero_lr = ["--lr", "0"]  # no update: the second run's weights are exactly what it started from
    second = train.main(["--out", str(tmp_path / "second"), "--init", str(first)] + args + zero_lr)
    fresh = train.main(["--out", str(tmp_path / "fresh")] + args + zero_lr)
    a, b, c = read_state_dict(first), read_state_dict(second), read_state_dict(fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    recipe = json.loads((tmp_path / "second" / "recipe.json").read_text())
    assert recipe["init"]["weights"] == str(first) and recipe["init"]["recipe"]["image_fraction"] == 1.0


def test_evaluation_through_the_runtime_with_memory_on_and_off(reduced_graphs):
    from streamsam.backend import OnnxRuntimeBackend
    from streamsam.video_predictor import VideoPredictor
    from training.evaluate import evaluate_graphs, run_video

    settings = VideoSettings(height=96, width=128, num_frames=4, min_objects=2, max_objects=2, distractor_probability=0.0)
    backend = OnnxRuntimeBackend(reduced_graphs, threads=1)
    video = generate_video(5, settings)
    for prompt in ("click", "box", "mask"):
        for memory in ("on", "off"):
            masks = run_video(backend, video, [0, 1], prompt, memory)
            assert masks.shape == (4, 2, 96, 128) and masks.dtype == bool
    # Memory off: frames read the prompted frame alone, not the frames before them.
    read = []

    class RecordingBackend:  # the real backend; records what memory attention reads
        manifest = backend.manifest

        def run(self, graph, inputs, outputs):
            if graph == "memory_attention":
                read.append((inputs["memory_valid"].tolist(), inputs["memory_tpos"].tolist(), inputs["obj_ptr_valid"].tolist()))
            backend.run(graph, inputs, outputs)

    predictor = VideoPredictor(RecordingBackend(), max_objects=1, tracked_memories=False)
    predictor.init_state(list(video.frames))
    predictor.add_new_mask(0, obj_id=1, mask=video.masks[0, 0])
    list(predictor.propagate_in_video())
    assert read == [([[True]], [[0]], [[True]])] * 3  # frames 1..3: one memory at position 0, one pointer
    summaries = evaluate_graphs(backend, videos=1, prompts=("mask",), settings=settings, progress=None, refine_clicks=(3,))
    assert [(s.label, s.memory) for s in summaries] == [("mask", "on"), ("mask", "off"), ("3 clicks", "on")]
    assert all(0 <= s.j <= 1 and 0 <= s.f <= 1 and 0 <= s.prompted_j <= 1 and 0 <= s.present_empty <= 1 for s in summaries)
    assert summaries[0].prompted_j > 0.9  # a mask prompt is the prompted frame's output as it is
    # --first-video: a later stretch of the held-out stream (the tuning split starts at 30), scored as run by hand.
    from training.evaluate import evaluation_video
    from training.metrics import video_scores

    (shifted,) = evaluate_graphs(backend, videos=1, prompts=("mask",), memories=("on",), settings=settings, progress=None, first_video=3)
    video, objects = evaluation_video(3, settings)
    masks = run_video(backend, video, objects, "mask", "on")
    by_hand = [video_scores(video.masks[:, obj], masks[:, i], skip_frames=(0,)) for i, obj in enumerate(objects)]
    assert shifted.objects == len(objects) and shifted.j == pytest.approx(np.mean([s.j for s in by_hand]))


def test_evaluations_split_by_prompt_combine_into_one_results_file(tmp_path):
    from training import evaluate

    def part(name, prompt, videos=30):
        row = dataclasses.asdict(evaluate.Summary(prompt, "on", 87, 0.5, 0.4, 0.45, 10, 0.1, 1 if prompt == "click" else 0, 0.6))
        path = tmp_path / name
        path.write_text(json.dumps({"graphs": "g", "checkpoint": None, "videos": videos, "results": [row]}))
        return path

    out = tmp_path / "eval.json"
    summaries = evaluate.main(["--combine", str(part("a.json", "click")), str(part("b.json", "box")), "--out", str(out)])
    assert [s.label for s in summaries] == ["click", "box"]
    assert [row["prompt"] for row in json.loads(out.read_text())["results"]] == ["click", "box"]
    with pytest.raises(SystemExit, match="videos differ"):
        evaluate.main(["--combine", str(part("a.json", "click")), str(part("c.json", "mask", videos=10)), "--out", str(out)])
    with pytest.raises(SystemExit, match="the same prompt"):
        evaluate.main(["--combine", str(part("a.json", "click")), str(part("d.json", "click")), "--out", str(out)])


def test_the_correction_click_goes_to_the_centre_of_the_largest_error():
    from streamsam.contracts import LABEL_NEGATIVE, LABEL_POSITIVE
    from training.prompts import error_center_clicks

    target = np.zeros((1, 40, 60), bool)
    target[0, 10:30, 10:50] = True
    missed = target.copy()
    missed[0, 10:30, 30:50] = False  # the right half is missed
    points, labels = error_center_clicks(target, missed)
    assert labels[0, 0] == LABEL_POSITIVE and 30 <= points[0, 0, 0] < 50 and 10 <= points[0, 0, 1] < 30
    overflow = target.copy()
    overflow[0, 30:40, :] = True  # a band below the object, deeper than any miss
    overflow[0, 10:12, 10:12] = False
    points, labels = error_center_clicks(target, overflow)
    assert labels[0, 0] == LABEL_NEGATIVE and points[0, 0, 1] >= 30
    points, labels = error_center_clicks(target, target)  # nothing to correct: the object's centre
    assert labels[0, 0] == LABEL_POSITIVE and points[0, 0, 1] in (19.0, 20.0) and 19 <= points[0, 0, 0] <= 40  # on the middle ridge


def test_decoder_probe_on_oracle_features_reports_its_ceiling_and_seeds_a_training_run(tmp_path, capsys):
    """The first phase of the demo recipe: the decoder learns on oracle features; train.py --init
    continues from its weights and keeps its recipe."""
    from streamsam.export.checkpoint import read_state_dict
    from training import probe_decoder, train

    weights = tmp_path / "oracle" / "model.pt"  # its folder is made, as train.py's --out
    probe_decoder.main(["--features", "oracle", "--steps", "2", "--every", "1", "--decoder-qk-tie", "2", "--save", str(weights)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 0.3 < lines[0]["ceiling"] < 1  # blocks of 16 x 16 pixels cannot draw the exact masks
    assert [line["step"] for line in lines[1:]] == [0, 1, 2]
    assert all(0 <= line["held_out_iou"] <= 1 for line in lines[1:])
    recipe = json.loads((weights.parent / "recipe.json").read_text())
    assert recipe["features"] == "oracle" and recipe["steps"] == 2 and recipe["held_out_iou"] == lines[-1]["held_out_iou"]
    second = train.main(["--out", str(tmp_path / "video"), "--init", str(weights), "--steps", "1", "--frames", "2",
                         "--max-objects", "1", "--max-correction-clicks", "1", "--val-clips", "0", "--lr", "0"])
    a, b = read_state_dict(weights), read_state_dict(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "video" / "recipe.json").read_text())["init"]["recipe"]["features"] == "oracle"


def test_decoder_probe_on_grid_codes_hands_the_encoders_high_resolution_features_to_the_decoder(tmp_path, capsys):
    """oracle_grid differs from oracle only in the high-resolution features: the same seed's codes,
    so the first evaluation differs only if the encoder's features reach the decoder."""
    from training import probe_decoder

    first = {}
    for features in ("oracle", "oracle_grid"):
        probe_decoder.main(["--features", features, "--steps", "0", "--every", "1"])
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert lines[0]["features"] == features and 0.3 < lines[0]["ceiling"] < 1
        first[features] = lines[1]["held_out_iou"]
    assert first["oracle"] != first["oracle_grid"]

    # --train-high-res: the encoder's stride-4 path learns; without it the encoder stays as it was.
    from streamsam.export.checkpoint import read_state_dict
    from training.train import get_training_config, new_model

    start = new_model(get_training_config("demo"), 0).state_dict()
    key = "image_encoder.trunk.patch_embed.proj.weight"
    for flag, moved in (([], False), (["--train-high-res"], True)):
        path = tmp_path / f"grid{len(flag)}" / "model.pt"
        probe_decoder.main(["--features", "oracle_grid", "--steps", "1", "--every", "5", "--save", str(path), *flag])
        assert (not torch.equal(read_state_dict(path)[key], start[key])) == moved
    capsys.readouterr()
    with pytest.raises(SystemExit):
        probe_decoder.main(["--features", "oracle", "--train-high-res"])
    assert "expected --features oracle_grid" in capsys.readouterr().err


def test_oracle_features_carry_each_cells_majority_segment_with_one_code_per_object_on_every_frame():
    from training.rollout import oracle_features, segment_map

    masks = np.zeros((2, 2, 32, 32), bool)
    masks[0, 0, 0:16, 0:10] = True  # object 0 covers 10 of a 16-pixel-wide cell: it wins the cell
    masks[1, 0, 16:32, 16:32] = True  # and moves to another cell on frame 1
    masks[1, 1, 0:16, 0:6] = True  # object 1 covers 6 columns of that cell: the background wins
    segments = segment_map(masks)
    assert segments.dtype == np.int8 and segments[0, 0, 0] == 1 and segments[1, 0, 0] == 2 and segments[1, 31, 31] == 1
    codes = torch.randn(3, 16)
    s0, s1, embed = oracle_features(segments, codes, grid=2)
    assert embed.shape == (2, 16, 2, 2) and s0.shape == (2, 2, 8, 8) and s1.shape == (2, 4, 4, 4)
    assert not s0.any() and not s1.any()
    torch.testing.assert_close(embed[0, :, 0, 0], codes[1])  # frame 0: object 0 top-left
    torch.testing.assert_close(embed[1, :, 1, 1], codes[1])  # frame 1: the same code where it moved
    torch.testing.assert_close(embed[1, :, 0, 0], codes[0])  # object 1 covers too little of its cell
    torch.testing.assert_close(embed[0, :, 1, 1], codes[0])


def test_a_phase_on_oracle_features_trains_memory_and_decoder_but_not_the_image_encoder(tmp_path):
    from streamsam.export.checkpoint import read_state_dict
    from training import train

    args = ["--steps", "2", "--config", "reduced", "--frames", "3", "--max-objects", "2", "--max-correction-clicks", "1", "--val-clips", "1"]
    final = train.main(["--out", str(tmp_path / "oracle"), "--oracle-features", "--image-fraction", "0"] + args)
    trained = read_state_dict(final)
    start = train.new_model(train.get_training_config("reduced"), 0, 2.0).state_dict()
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    assert not any(k.startswith("image_encoder.") for k in changed)
    assert any(k.startswith("memory_attention.") for k in changed) and any(k.startswith("sam_mask_decoder.") for k in changed)
    assert json.loads((tmp_path / "oracle" / "recipe.json").read_text())["oracle_features"] is True


def test_the_mask_refinement_phase_trains_only_the_path_from_high_resolution_features_to_the_mask(tmp_path):
    """--trainable mask_refinement: the neck's fine laterals, conv_s0 / conv_s1, the upscaling, the
    hypernetworks and the IoU head change; what finds the object (trunk, memory, prompt encoder,
    decoder transformer, object-score head) does not, and the recipe says which parameters trained."""
    from streamsam.export.checkpoint import read_state_dict
    from training import train

    args = ["--steps", "2", "--config", "reduced", "--frames", "3", "--max-objects", "2", "--max-correction-clicks", "1",
            "--val-clips", "1", "--image-fraction", "0", "--lr", "1e-3", "--warmup-steps", "1"]
    final = train.main(["--out", str(tmp_path / "refine"), "--trainable", "mask_refinement"] + args)
    trained = read_state_dict(final)
    start = train.new_model(train.get_training_config("reduced"), 0, 2.0).state_dict()
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    prefixes = train.TRAINABLE["mask_refinement"]
    assert changed and all(k.startswith(prefixes) for k in changed)
    for prefix in ("sam_mask_decoder.output_upscaling.", "sam_mask_decoder.conv_s0.", "sam_mask_decoder.output_hypernetworks_mlps.",
                   "image_encoder.neck.convs.3."):
        assert any(k.startswith(prefix) for k in changed), prefix
    recipe = json.loads((tmp_path / "refine" / "recipe.json").read_text())
    assert recipe["trainable"]["name"] == "mask_refinement"
    assert 0 < recipe["trainable"]["parameters"] < sum(v.numel() for v in start.values()) / 2


def test_detached_memories_keep_the_losses_and_stop_gradients_through_time():
    """ClipRollout(detach_memory=True) computes the same losses; only the gradient of later frames'
    losses no longer reaches earlier frames' masks (so the upscaling's gradient differs)."""
    from training.rollout import ClipRollout, RecipeSettings
    from training.train import clip_seed, draw_clip, get_training_config, new_model

    model = new_model(get_training_config("reduced"), 0, 2.0)
    with torch.no_grad():  # objects scored present: an absent score gates the mask to a constant, which carries no gradient
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(10.0)
    recipe = RecipeSettings(prompt_probabilities=(0.0, 0.0, 1.0), max_objects=2, max_correction_clicks=0, first_frame_probability=1.0)
    videos = VideoSettings(height=model.config.image_size, width=model.config.image_size, num_frames=3)
    totals, grads = [], []
    for detach in (False, True):
        clip, rng = draw_clip(clip_seed(3, 0, 0), videos, recipe)
        model.zero_grad()
        total = ClipRollout(model, recipe, detach_memory=detach).forward(clip, rng).losses.total(recipe.loss_weights)
        total.backward()
        totals.append(total.detach())
        grads.append(model.sam_mask_decoder.output_upscaling[0].weight.grad.clone())
    torch.testing.assert_close(totals[0], totals[1])
    assert not torch.allclose(grads[0], grads[1])


def test_prompt_probabilities_from_the_command_line(capsys):
    from training.train import parse_args

    args = parse_args(["--out", "x", "--steps", "1", "--prompt-probabilities", "1,0,0"])
    assert args.prompt_probabilities == (1.0, 0.0, 0.0)
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--steps", "1", "--prompt-probabilities", "mask"])
    assert "expected three numbers MASK,BOX,CLICK" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--steps", "1", "--cross-probability", "1.5"])
    assert "cross-probability=1.5" in capsys.readouterr().err


def test_memory_probe_scores_tracked_frames_with_the_right_and_a_swapped_prompt(tmp_path, capsys):
    from streamsam.export.random_weights import seeded_state_dict
    from training import probe_memory, train

    checkpoint = tmp_path / "model.pt"
    torch.save({"model": seeded_state_dict(train.new_model(train.get_training_config("reduced"), 0).state_dict())}, checkpoint)
    result = probe_memory.main(["--checkpoint", str(checkpoint), "--config", "reduced", "--clips", "2", "--frames", "3"])
    assert json.loads(capsys.readouterr().out) == result and result["clips"] == 2
    assert 0 <= result["tracked_iou_right_prompt"] <= 1 and 0 <= result["tracked_iou_swapped_prompt"] <= 1


def test_heads_probe_removes_the_high_resolution_features_and_ranks_object_scores(tmp_path, capsys):
    from streamsam.export.random_weights import seeded_state_dict
    from training import probe_heads, train
    from training.rollout import RecipeSettings

    assert probe_heads.auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert probe_heads.auc(np.array([2.0]), np.array([1.0, 2.0])) == 0.25
    model = train.new_model(train.get_training_config("reduced"), 0)
    model.load_state_dict(seeded_state_dict(model.state_dict()))
    model.eval()
    rollout = probe_heads.RecordingRollout(model, RecipeSettings(prompt_probabilities=(0.0, 0.0, 1.0), max_correction_clicks=0))
    clip, rng = train.draw_clip((9, 0), VideoSettings(height=256, width=256, num_frames=2), rollout.recipe)
    masks = {}
    for zero in (False, True):
        rollout.zero_high_res, rollout.outputs = zero, []
        with torch.no_grad():
            rollout.forward(clip, np.random.default_rng(0))
        masks[zero] = torch.cat([out.multimasks for out in rollout.outputs])
    assert not torch.allclose(masks[False], masks[True])  # the ablation reaches the decoder
    checkpoint = tmp_path / "model.pt"
    torch.save({"model": model.state_dict()}, checkpoint)
    result = probe_heads.main(["--checkpoint", str(checkpoint), "--config", "reduced", "--clips", "2", "--frames", "3"])
    printed = json.loads(capsys.readouterr().out)  # one JSON line (AUC is NaN when no frame is absent)
    assert printed.keys() == result.keys() and printed["tracked_iou"] == result["tracked_iou"]
    assert 0 <= result["tracked_iou"] <= 1 and 0 <= result["tracked_iou_without_high_res_features"] <= 1


def test_memory_match_init_makes_the_memory_say_where_the_prompted_object_went():
    """On oracle features, a memory of object A's mask and one of object B's must change the next
    frame's conditioned features where A and B now are, not everywhere: with init_memory_match each
    location reads the memory of what looks like it; PyTorch's init spreads the memory everywhere."""
    from training.demo_config import DEMO_CONFIG
    from training.rollout import ClipRollout, oracle_features, select_memories
    from training.train import init_memory_match, new_model

    size = DEMO_CONFIG.image_size
    segments = np.zeros((2, size, size), np.int8)
    segments[0, 32:96, 32:96], segments[1, 48:112, 64:128] = 1, 1  # object A moves right and down
    segments[0, 160:224, 128:208], segments[1, 144:208, 112:192] = 2, 2  # object B moves left and up
    codes = torch.from_numpy(np.random.default_rng(0).standard_normal((3, DEMO_CONFIG.d_model)).astype(np.float32))
    hr0, hr1, embeds = oracle_features(segments, codes, size // 16)
    masks = torch.from_numpy(np.stack([segments[0] == 1, segments[0] == 2])).float()
    moved = torch.nn.functional.interpolate(torch.from_numpy(segments[1] > 0).float()[None, None], size=(16, 16), mode="area")[0, 0] > 0.5

    def localisation(model) -> float:
        rollout = ClipRollout(model.eval(), oracle=True)
        with torch.no_grad():
            prompted = rollout.mask_as_output(embeds[0:1], (hr0[0:1], hr1[0:1]), masks)
            memories, pointers = select_memories(1, 1, {0: rollout.encode_memory(embeds[0:1], prompted, True)}, {}, 2, 7, 16)
            conditioned = rollout.attend(embeds[1:2], 2, memories, pointers)  # row 0: A's memory, row 1: B's
        change = (conditioned[0] - conditioned[1]).norm(dim=0)  # [16, 16]
        return float(change[moved].mean() / change[~moved].mean())

    plain = new_model(DEMO_CONFIG, 0, 2.0)
    matched = new_model(DEMO_CONFIG, 0, 2.0)
    init_memory_match(matched)
    assert localisation(matched) > 5.0
    assert localisation(plain) < 2.0


def test_segment_contrast_rewards_features_that_tell_segments_apart_on_every_frame():
    from training.losses import segment_contrast
    from training.rollout import cell_segments

    segments = np.zeros((2, 64, 64), np.int8)
    segments[0, :32, :32], segments[1, 32:, 32:] = 1, 1  # object 1 moves
    segments[0, 32:, :], segments[1, :32, :] = 2, 2  # object 2 swaps halves
    cells = cell_segments(segments, grid=4)
    assert cells.shape == (2, 4, 4) and cells[0, 0, 0] == 1 and cells[1, 3, 3] == 1 and cells[1, 0, 3] == 2
    own = torch.nn.functional.one_hot(cells, 8).permute(0, 3, 1, 2).float()  # one feature per segment
    shared = own.clone()
    shared[:, 2] += shared[:, 1]  # objects 1 and 2 look alike
    shared[:, 1] = 0
    noise = torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    assert segment_contrast(own, cells) < segment_contrast(shared, cells) < segment_contrast(noise, cells) + 1.0
    assert segment_contrast(own, cells) < segment_contrast(noise, cells) - 1.0


def test_sampled_segment_contrast_rewards_high_resolution_features_that_follow_the_object_edges():
    """--high-res-feature-weight: on sampled pixels of the high-resolution maps, features that change
    exactly at the object's edge score better than features of the 16-pixel cells (blocky edges)."""
    from training.losses import sampled_segment_contrast

    pixels = torch.zeros(2, 32, 32, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    pixels[0][(yy - 13) ** 2 + (xx - 15) ** 2 < 81] = 1  # a disc, edges off the 4-pixel cells
    pixels[1][(yy - 17) ** 2 + (xx - 19) ** 2 < 81] = 1
    exact = torch.nn.functional.one_hot(pixels, 4).permute(0, 3, 1, 2).float()
    cells = torch.nn.functional.avg_pool2d(exact, 8).round()  # the majority of 8 x 8 cells
    blocky = torch.nn.functional.interpolate(cells, scale_factor=8, mode="nearest")
    assert (blocky.argmax(1) != pixels).any()

    def loss(feats):
        return float(sampled_segment_contrast(feats, pixels, 512, np.random.default_rng(0)))

    assert loss(exact) < loss(blocky) - 0.5


def test_the_memory_match_phase_and_the_feature_loss_from_the_command_line(tmp_path):
    """--memory-match-init re-initialises the memory modules after --init's weights are loaded (the
    decoder keeps the loaded ones); --feature-weight adds segment_contrast to every logged step."""
    from streamsam.export.checkpoint import read_state_dict
    from training import train

    args = ["--steps", "1", "--config", "reduced", "--frames", "2", "--max-objects", "2", "--max-correction-clicks", "0",
            "--val-clips", "0", "--image-fraction", "0", "--lr", "1e-12", "--log-every", "1"]
    first = train.main(["--out", str(tmp_path / "first")] + args)
    second = train.main(["--out", str(tmp_path / "second"), "--init", str(first), "--memory-match-init", "--feature-weight", "1"] + args)
    before, after = read_state_dict(first), read_state_dict(second)
    k_proj = "memory_attention.layers.0.cross_attn_image.k_proj.weight"
    assert not torch.allclose(before[k_proj], after[k_proj])  # re-initialised as a content match
    assert after["memory_encoder.pix_feat_proj.bias"].abs().max() < 1e-9  # zero at init, one step of lr 1e-12
    decoder = "sam_mask_decoder.iou_token.weight"
    torch.testing.assert_close(before[decoder], after[decoder], rtol=0, atol=1e-9)  # loaded, barely trained (lr 1e-12)
    logged = [json.loads(line) for line in (tmp_path / "second" / "log.jsonl").read_text().splitlines()]
    assert logged[0]["feature"] > 0 and json.loads((tmp_path / "first" / "log.jsonl").read_text().splitlines()[0])["feature"] == 0
    recipe = json.loads((tmp_path / "second" / "recipe.json").read_text())
    assert recipe["memory_match_init"] is True and recipe["recipe"]["loss_weights"]["feature"] == 1.0


def test_the_object_score_and_high_resolution_feature_weights_from_the_command_line(tmp_path):
    """--score-weight and --high-res-feature-weight reach the losses, the log and the recipe, and
    each checkpoint records how many absent frames the model predicted empty."""
    from training import train

    args = ["--steps", "1", "--config", "reduced", "--frames", "3", "--max-objects", "2", "--max-correction-clicks", "0",
            "--val-clips", "2", "--image-fraction", "0", "--lr", "1e-12", "--log-every", "1"]
    train.main(["--out", str(tmp_path / "run"), "--score-weight", "5", "--high-res-feature-weight", "1",
                "--absent-mask-weight", "2", "--absent-score-weight", "3", "--exit-probability", "0.5",
                "--distractor-probability", "0.9", "--cross-probability", "0.8"] + args)
    logged = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert logged["high_res_feature"] > 0
    weights = logged["total"] - (logged["focal"] * 20 + logged["dice"] + logged["iou"] + 5 * logged["score"] + logged["high_res_feature"])
    assert abs(weights) < 1e-3 * max(1.0, logged["total"])
    recipe = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert recipe["recipe"]["loss_weights"]["score"] == 5.0 and recipe["recipe"]["loss_weights"]["high_res_feature"] == 1.0
    assert recipe["recipe"]["loss_weights"]["absent_mask"] == 2.0 and recipe["recipe"]["loss_weights"]["absent_score"] == 3.0
    assert recipe["videos"]["exit_probability"] == 0.5
    assert recipe["videos"]["distractor_probability"] == 0.9 and recipe["videos"]["cross_probability"] == 0.8
    progress = recipe["progress"]
    assert 0.0 <= progress["validation_absent_empty"] <= 1.0 or math.isnan(progress["validation_absent_empty"])


def test_object_score_calibration_shifts_the_threshold_inside_the_weights_and_keeps_the_best(tmp_path):
    """calibrate_score: a shift of the score head's bias moves every object score by that much, so a
    large negative shift empties every tracked frame and a large positive one none; the command
    writes the best shift's weights, the sweep and the run's recipe."""
    from streamsam.export.config import get_config
    from streamsam.export.modeling.sam2_model import Sam2Model
    from streamsam.export.random_weights import seeded_state_dict
    from training import calibrate_score

    model = Sam2Model(get_config("reduced"))
    state = seeded_state_dict(model.state_dict())
    key = calibrate_score.score_bias_key(state)
    assert key.startswith("sam_mask_decoder.pred_obj_score_head.") and key.endswith("bias")
    torch.testing.assert_close(calibrate_score.shifted(state, -2.0)[key], state[key] - 2.0)
    settings = VideoSettings(height=96, width=128, num_frames=4, min_objects=2, max_objects=2, distractor_probability=0.0)
    low, high = calibrate_score.sweep_shifts(state, get_config("reduced"), [-100.0, 100.0], videos=1, prompts=("mask",),
                                             settings=settings)
    assert low["mask_present_empty"] == 1.0 and high["mask_present_empty"] == 0.0

    checkpoint = tmp_path / "run" / "model.pt"
    checkpoint.parent.mkdir()
    torch.save({"model": state}, checkpoint)
    (checkpoint.parent / "recipe.json").write_text(json.dumps({"seed": 7}))
    chosen = calibrate_score.main(["--checkpoint", str(checkpoint), "--config", "reduced", "--shifts=-100,0", "--videos", "1",
                                   "--prompts", "mask", "--out", str(tmp_path / "cal")])
    record = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert chosen == record["chosen_shift"] == max(record["sweep"], key=lambda row: row["j_and_f"])["shift"]
    saved = torch.load(tmp_path / "cal" / "model.pt", weights_only=True)["model"]
    torch.testing.assert_close(saved[key], state[key] + chosen)
    recipe = json.loads((tmp_path / "cal" / "recipe.json").read_text())
    assert recipe["seed"] == 7 and recipe["object_score_calibration"]["chosen_shift"] == chosen


def test_tracking_probe_sorts_every_tracked_frame_and_draws_true_masks_on_the_grid(tmp_path, capsys):
    from streamsam.export.random_weights import seeded_state_dict
    from training import probe_tracking, train
    from training.evaluate import evaluation_video

    square = torch.zeros(64, 64, dtype=torch.bool)
    square[16:48, 16:32] = True  # on the grid: kept as it is
    assert torch.equal(probe_tracking.grid_mask(square), square)
    blob = torch.zeros(64, 64, dtype=torch.bool)
    blob[18:24, 18:24] = True  # under half a cell: gone
    assert not probe_tracking.grid_mask(blob).any()

    checkpoint = tmp_path / "model.pt"
    torch.save({"model": seeded_state_dict(train.new_model(train.get_training_config("reduced"), 0).state_dict())}, checkpoint)
    result = probe_tracking.main(["--checkpoint", str(checkpoint), "--config", "reduced", "--first-video", "3", "--videos", "1"])
    assert json.loads(capsys.readouterr().out) == result
    video, objects = evaluation_video(3)
    size = train.get_training_config("reduced").image_size
    _, masks = probe_tracking.square_video(video.frames, video.masks, size)
    tracked = masks[1:, objects].reshape(-1, size * size).any(1)
    assert (result["present_frames"], result["absent_frames"]) == (int(tracked.sum()), int((~tracked).sum()))
    shares = [result[f"present_{key}"] for key in ("empty", "switched", "lost", "tracked")]
    assert abs(sum(shares) - 1) < 0.01  # every present frame in exactly one class
    assert result["present_j"] <= result["present_j_best_of_three"] + 1e-6 and 0 < result["present_j_true_mask_on_grid"] <= 1
    assert result["present_f"] is not None and 0 < result["j_and_f_true_mask_on_grid"] <= 1
