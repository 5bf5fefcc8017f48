import dataclasses

import pytest

from dcpclip.config import ExperimentConfig
from dcpclip.config_schema import ConfigError, from_dict, to_dict
from dcpclip.model.variants import VARIANTS
from experiments.compose import GROUPS, compose_config, group_options


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(group):
    options = group_options(group)
    assert options, f"config group {group} has no options"
    for option in options:
        # paper-sized options need the paper profile around them (crop = backbone input, 256 stride)
        paper_sized = (group, option) in {("model", "vitb16"), ("model", "vitl14"), ("train", "paper"),
                                          ("eval", "paper")}
        extra = ["profile=paper"] if paper_sized else []
        cfg = compose_config([*extra, f"{group}={option}"])
        assert isinstance(cfg, ExperimentConfig)


def test_variant_group_mirrors_the_registry():
    assert set(group_options("variant")) == set(VARIANTS)
    for name in VARIANTS:
        assert compose_config([f"variant={name}"]).variant == name


def test_profiles_select_the_documented_setups():
    offline = compose_config([])
    assert (offline.profile, offline.backbone.arch, offline.data.source) == ("offline", "dcpclip-tiny", "synthetic")
    paper = compose_config(["profile=paper"])
    assert (paper.backbone.arch, paper.backbone.pretrained, paper.data.source) == ("ViT-B-16", "openai", "real")
    assert (paper.train.iterations, paper.train.crop_size, paper.backbone.image_size) == (80_000, 384, 384)
    assert paper.backbone.intermediate_blocks == (3, 7)
    assert (paper.grid.gpus_per_trial, offline.grid.gpus_per_trial) == (1.0, 0.0)
    large = compose_config(["profile=paper", "model=vitl14"])
    assert (large.backbone.arch, large.train.crop_size, large.backbone.intermediate_blocks) == (
        "ViT-L-14-336", 336, (7, 15))


def test_round_trip_through_plain_dicts():
    cfg = compose_config(["variant=no_dual"])
    assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=vitb17"], "vitb17"),
        (["variant=no_such"], "no_such"),
        (["eval.mode=tiles"], "eval.mode: invalid value 'tiles' (allowed: 'sliding', 'whole')"),
        (["head.top_k=many"], "head.top_k: expected an integer"),
        (["+head.topk=3"], "unknown config key head.topk"),
        (["data.benchmarks=[a150,coco]"], "data.benchmarks: unknown benchmark 'coco'"),
        (["train.crop_size=96"], "train.crop_size 96 != backbone.image_size 64"),
        (["head.presence_prior=0"], "head.presence_prior: must be a probability in (0, 1), got 0"),
        (["grid.variants=[full,no_daul]"], "grid.variants: unknown variant 'no_daul'"),
    ],
)
def test_bad_values_fail_with_the_key_named(overrides, message):
    with pytest.raises(ConfigError) as err:
        compose_config(overrides)
    assert message in str(err.value)


def test_unknown_group_option_lists_the_choices():
    with pytest.raises(ConfigError) as err:
        compose_config(["model=vitb17"])
    assert "tiny" in str(err.value) and "vitl14" in str(err.value)


def test_variant_registry_entries_are_head_deltas():
    from dcpclip.model.config import HeadConfig

    fields = {f.name for f in dataclasses.fields(HeadConfig)}
    for variant in VARIANTS.values():
        assert set(variant.delta) <= fields
    assert VARIANTS["full"].delta == {}
