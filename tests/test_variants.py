"""A variant is a head delta composed once (experiments/conf/variant/), and a run's variant name is read
off the head it composes, so a name can never disagree with the model it labels."""

from __future__ import annotations

import dataclasses
import itertools
import shutil

import pytest
import yaml

from dcpclip import paths
from dcpclip.config import with_variant
from dcpclip.config_schema import ConfigError
from dcpclip.model.config import HeadConfig
from dcpclip.model.variants import (
    VARIANTS,
    check_variant_name,
    variant_head,
    variant_of,
    variant_override,
    variant_trains,
)
from experiments.compose import CONFIG_DIR, compose_config

COMBINED = ["+".join(pair) for pair in itertools.combinations(VARIANTS, 2) if not {"full", "zero_shot"} & set(pair)]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_yaml_carries_exactly_its_registry_delta(name):
    written = yaml.safe_load((CONFIG_DIR / "variant" / f"{name}.yaml").read_text()) or {}
    assert written == ({"head": VARIANTS[name].delta} if VARIANTS[name].delta else {})
    base, composed = compose_config([]).head, compose_config([f"variant={name}"]).head
    changed = {f.name: getattr(composed, f.name) for f in dataclasses.fields(HeadConfig)
               if getattr(composed, f.name) != getattr(base, f.name)}
    assert changed == VARIANTS[name].delta


@pytest.mark.parametrize("name", [*VARIANTS, *COMBINED])
def test_a_name_composes_its_head_and_is_read_back_off_it(name):
    cfg = compose_config([variant_override(name)])
    assert cfg.variant == name
    assert cfg.head == variant_head(compose_config([]).head, name)
    assert cfg.trains == variant_trains(name) == all(VARIANTS[p].trains for p in name.split("+"))
    assert paths.run_dir(cfg).parts[-2] == name


@pytest.mark.parametrize("overrides, name", [
    (["variant=full", "head.dual=false"], "no_dual"),  # a flag set by hand names the run by what it runs
    (["variant=no_dual", "head.dual=true"], "full"),
    (["variant=[static_text,no_prune]"], "no_prune+static_text"),  # one spelling, whatever the order given
    (["variant=[no_prune,static_text]", "profile=paper"], "no_prune+static_text"),
])
def test_the_name_follows_the_flags_not_the_option_chosen(overrides, name):
    cfg = compose_config(overrides)
    assert cfg.variant == name
    assert f"/{name}/" in str(paths.eval_record_path(cfg, "a150"))


def test_switching_variant_resets_the_flags_of_the_previous_one():
    cfg = compose_config(["variant=[no_prune,no_dual]", "head.top_k=5"])
    full = with_variant(cfg, "full")
    assert full.variant == "full" and full.head == dataclasses.replace(compose_config([]).head, top_k=5)
    assert with_variant(cfg, "static_text").variant == "static_text"
    assert variant_of(HeadConfig()) == "full"


@pytest.mark.parametrize("name, message", [
    ("static_text+no_prune", "spell it 'no_prune+static_text'"),
    ("full+no_dual", "spell it 'no_dual'"),
    ("no_dual+no_dual", "spell it 'no_dual'"),
    ("no_daul", "unknown variant 'no_daul'"),
    ("", "unknown variant ''"),
    ("no_dual+zero_shot", "zero_shot stands alone"),
])
def test_a_name_spelled_otherwise_than_its_records_is_refused(name, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        check_variant_name(name)


def test_a_grid_entry_must_be_spelled_as_its_records_are():
    with pytest.raises(ConfigError, match=r"grid.variants: variant 'static_text\+no_prune': spell it"):
        compose_config(["grid.variants=[full,static_text+no_prune]"])
    assert compose_config(["grid.variants=[full,no_prune+static_text]"]).grid.variants == (
        "full", "no_prune+static_text")


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v.delta])
def test_every_delta_changes_the_full_model(name):
    # a delta equal to the default would name every full run after this variant
    full = HeadConfig()
    assert all(getattr(full, key) != value for key, value in VARIANTS[name].delta.items())


def test_a_new_variant_is_one_yaml_delta_and_one_registry_line(tmp_path, monkeypatch):
    # the README's recipe ("Add a variant"), followed in a copy of the config tree
    from dcpclip.model import variants
    from experiments import compose

    conf = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR, conf)
    (conf / "variant" / "no_prune_loss.yaml").write_text("# @package _global_\nhead:\n  prune_loss_weight: 0.0\n")
    monkeypatch.setattr(compose, "CONFIG_DIR", conf)
    monkeypatch.setitem(variants.VARIANTS, "no_prune_loss",
                        variants.Variant("no_prune_loss", {"prune_loss_weight": 0.0}, True, "the pruner's own loss"))
    cfg = compose_config(["variant=no_prune_loss", "grid.variants=[full,no_prune_loss,no_dual+no_prune_loss]"])
    assert (cfg.variant, cfg.head.prune_loss_weight, cfg.trains) == ("no_prune_loss", 0.0, True)
    assert paths.run_dir(cfg).parts[-2] == "no_prune_loss"
    assert compose_config(["variant=[no_dual,no_prune_loss]"]).variant == "no_dual+no_prune_loss"


@pytest.mark.parametrize("overrides", [["variant=zero_shot", "head.prune=false"], ["variant=[no_dual,zero_shot]"]])
def test_the_training_free_baseline_takes_no_other_variant_flag(overrides):
    # zero_shot ignores the head's flags: a combination would name one model twice
    with pytest.raises(ConfigError, match="zero_shot stands alone"):
        compose_config(overrides)


def test_a_grid_job_whose_overrides_change_its_variant_is_refused():
    from experiments import evaluate_all, flops_all, train_all

    for planner in (train_all.training_jobs, evaluate_all.evaluation_jobs, flops_all.flops_jobs):
        with pytest.raises(ConfigError, match="variant 'full' with overrides .* composes the head of 'no_dual'"):
            planner(["head.dual=false", "grid.variants=[full,no_dual]"])
