"""Run config: presets, ``key=value`` overrides, YAML round trip, clear errors."""

from __future__ import annotations

import pytest

from fabricdet.engine import PRESETS, ConfigError, apply_overrides, load_config, preset
from fabricdet.engine.config_io import (
    config_from_dict,
    leaf_keys,
    save_config,
    saved_config,
    to_dict,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_independent(name):
    a, b = preset(name), preset(name)
    assert a == b and a is not b
    a.train.max_steps += 1
    assert preset(name).train.max_steps == b.train.max_steps  # no shared state


def test_overrides_parse_to_the_field_types():
    cfg = apply_overrides(
        preset("tiny"),
        [
            "train.max_steps=200",
            "model.nms=greedy",
            "model.strides=[8,16,32]",
            "model.sinkhorn.eps=0.1",
            "train.lr=1e-3",  # YAML 1.1 reads this as a string; it is still a float
            "train.amp=true",
            "eval.nms=none",
            "model.backbone_weights=/w/resnet.pt",
            "train.betas=0.8,0.95",
        ],
    )
    assert cfg.train.max_steps == 200 and isinstance(cfg.train.max_steps, int)
    assert cfg.model.nms == "greedy"
    assert cfg.model.strides == (8, 16, 32)
    assert cfg.model.sinkhorn.eps == 0.1
    assert cfg.train.lr == 1e-3 and cfg.train.amp is True
    assert cfg.eval.nms is None
    assert cfg.model.backbone_weights == "/w/resnet.pt"
    assert cfg.train.betas == (0.8, 0.95)


def test_overrides_leave_the_input_alone():
    base = preset("tiny")
    apply_overrides(base, ["train.max_steps=99", "model.sinkhorn.eps=0.2"])
    assert base == preset("tiny")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_step=3", "did you mean train.max_steps"),
        ("trian.lr=1", "valid keys"),
        ("train.max_steps=many", "train.max_steps"),
        ("train.amp=maybe", "train.amp"),
        ("model.nms=fast", "greedy, soft, matrix, diou, wbf, sinkhorn"),
        ("data.masks=some", "none, full"),
        ("train.max_steps=0", "train.max_steps"),
        ("train=3", "is a section"),
        ("max_steps", "not key=value"),
        ("model.sinkhorn.eps=0", "model.sinkhorn.eps=0.0 is invalid"),
        ("model.sinkhorn.num_iters=0", "model.sinkhorn.num_iters"),
        ("model.sinkhorn.feature_margin=1", "model.sinkhorn.feature_margin"),
        ("model.sinkhorn.fuse_power=-1", "model.sinkhorn.fuse_power"),
        ("train.ema_decay=1", "train.ema_decay"),
        ("model.sinkhorn.overlap=giou", "iou, diou, nwd, iou\\+nwd"),
        ("model.set_loss_scores=some", "all or matched or none"),
        ("model.set_loss_plan_grad=big", "raw or eps or none"),
        ("model.set_loss_rank_weight=-1", "model.set_loss_rank_weight=-1.0 is invalid"),
        ("model.embed_neighbour_weight=-1", "model.embed_neighbour_weight"),
        ("model.box_quality_weight=-1", "model.box_quality_weight"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("tiny"), [override])


def test_unknown_key_lists_valid_keys_of_its_section():
    with pytest.raises(ConfigError) as err:
        apply_overrides(preset("tiny"), ["train.steps=3"])
    text = str(err.value)
    assert "train.max_steps" in text and "train.lr" in text and "model.width" not in text


def test_unknown_preset():
    with pytest.raises(ConfigError, match="default, full, tiny"):
        preset("huge")


def test_yaml_round_trip(tmp_path):
    cfg = apply_overrides(preset("full"), ["model.strides=[4,8]", "eval.nms=wbf"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert set(leaf_keys()) >= {"model.sinkhorn.eps", "data.max_size", "eval.nms"}


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(path)
    path.write_text("train:\n  max_stepz: 3\n")
    with pytest.raises(ConfigError, match=r"config\.yaml.*train\.max_stepz"):
        load_config(path)
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("only, scores", [(True, "matched"), (False, "all")])
def test_a_saved_config_with_a_renamed_key_loads_under_the_new_one(only, scores) -> None:
    data = to_dict(preset("default"))
    del data["model"]["set_loss_scores"]
    data["model"]["set_loss_suppress_only"] = only  # as written before the rename
    assert saved_config(data, where="old model").model.set_loss_scores == scores


@pytest.mark.parametrize(
    "key, today, before",
    [
        ("set_loss_spatial_grad", False, True),
        ("set_loss_plan_grad", "none", "raw"),
        ("medoid_boxes", True, False),
    ],
)
def test_a_saved_config_from_before_a_key_keeps_the_behaviour_it_was_trained_with(
    key: str, today: object, before: object
) -> None:
    data = to_dict(preset("default"))
    assert data["model"][key] == today
    del data["model"][key]  # as written before the key existed
    assert getattr(saved_config(data, where="old model").model, key) == before
    # a config written by hand takes today's defaults
    assert getattr(config_from_dict(data).model, key) == today
