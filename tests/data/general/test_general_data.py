"""The general detection set: deterministic, COCO round trip, exact masks, crowded scenes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats import load_dataset
from fabricdet.data.formats.rle import decode_mask, rle_area, rle_bbox
from fabricdet.data.general import (
    GENERAL_CATEGORIES,
    GeneralSynthError,
    generate_general,
    make_object,
    render_scene,
)

SIZE = (96, 80)
N = 16


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DetectionDataset]:
    out = tmp_path_factory.mktemp("general")
    return out, generate_general(out, N, seed=5, size=SIZE)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_images(
    generated: tuple[Path, DetectionDataset], tmp_path: Path
) -> None:
    out, _ = generated
    generate_general(tmp_path / "again", N, seed=5, size=SIZE)
    generate_general(tmp_path / "other", N, seed=6, size=SIZE)
    assert _files(tmp_path / "again") == _files(out)
    other = _files(tmp_path / "other")
    assert other.keys() == _files(out).keys()
    assert other["annotations.json"] != _files(out)["annotations.json"]


def test_a_scene_renders_alone_as_in_the_dataset(generated: tuple[Path, DetectionDataset]) -> None:
    # Each image has its own random stream: rendering image 3 alone gives its annotations.
    _, dataset = generated
    _, instances = render_scene(5, 3, SIZE)
    assert [(i.box, i.category_id) for i in instances] == [
        (i.box, i.category_id) for i in dataset.images[3].instances
    ]


def test_load_dataset_reads_back_what_was_written(generated: tuple[Path, DetectionDataset]) -> None:
    out, written = generated
    read = load_dataset(out)
    assert [c.name for c in read.categories] == [c.name for c in GENERAL_CATEGORIES]
    assert read.num_classes == 7
    assert len(read.images) == N
    for a, b in zip(written.images, read.images, strict=True):
        assert (b.file_name, b.width, b.height, b.split) == (a.file_name, *SIZE, a.split)
        assert [(i.box, i.category_id) for i in b.instances] == [
            (i.box, i.category_id) for i in a.instances
        ]
        assert [i.mask["counts"] for i in b.instances] == [i.mask["counts"] for i in a.instances]
    # Exact counts: val and test get their rounded shares, train the rest.
    counts = {s: sum(r.split == s for r in read.images) for s in ("train", "val", "test")}
    assert counts == {
        "train": N - 2 * round(0.1 * N),
        "val": round(0.1 * N),
        "test": round(0.1 * N),
    }


def test_masks_are_exact_visible_and_boxes_are_their_extents(
    generated: tuple[Path, DetectionDataset],
) -> None:
    _, dataset = generated
    for rec in dataset.images:
        union = np.zeros((rec.height, rec.width), int)
        for inst in rec.instances:
            mask = decode_mask(inst.mask)
            assert mask.shape == (rec.height, rec.width)
            assert rle_area(inst.mask) == mask.sum() > 0
            assert rle_bbox(inst.mask) == pytest.approx(inst.box)
            union += mask
        # Visible masks follow the depth order: no pixel belongs to two objects.
        assert union.max() <= 1


def test_scenes_are_crowded_and_occluded(generated: tuple[Path, DetectionDataset]) -> None:
    _, dataset = generated
    crowded = 0
    for rec in dataset.images:
        for a, b in itertools.combinations(rec.instances, 2):
            iou = box_iou(torch.tensor([a.box]), torch.tensor([b.box]))[0, 0]
            if a.category_id == b.category_id and iou > 0.3:
                crowded += 1
                break
    assert crowded >= N // 4
    counts = [len(r.instances) for r in dataset.images]
    assert np.mean(counts) >= 3
    used = {i.category_id for r in dataset.images for i in r.instances}
    assert len(used) >= 5


@pytest.mark.parametrize("category", GENERAL_CATEGORIES, ids=lambda c: c.name)
def test_every_category_draws_a_patch_with_its_mask(category: object) -> None:
    rng = np.random.default_rng(0)
    patch, mask = make_object(rng, category.id, 40)  # type: ignore[attr-defined]
    assert patch.dtype == np.float32 and mask.dtype == bool
    assert patch.shape == (*mask.shape, 3)
    assert patch.min() >= 0.0 and patch.max() <= 1.0
    assert mask.sum() > 0.1 * mask.size
    # Rotation crops to the mask: the mask touches all four sides of its patch.
    assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
    assert 20 <= max(mask.shape) <= 60


def test_refuses_an_existing_dataset_unless_told(
    generated: tuple[Path, DetectionDataset], tmp_path: Path
) -> None:
    generate_general(tmp_path, 2, size=(48, 48))
    with pytest.raises(GeneralSynthError, match="--overwrite"):
        generate_general(tmp_path, 2, size=(48, 48))
    redone = generate_general(tmp_path, 3, size=(48, 48), seed=1, overwrite=True)
    assert len(load_dataset(tmp_path).images) == len(redone.images) == 3
    assert len(list((tmp_path / "images").iterdir())) == 3
    with pytest.raises(GeneralSynthError, match="at least 32"):
        generate_general(tmp_path / "small", 2, size=(16, 64))
