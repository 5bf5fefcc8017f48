"""One source of truth per setting: every typed key (dcpclip/config.py and the dataclasses it holds) has a
value in the YAML tree of experiments/conf, so any key is overridden as `key=value` (never `+key=value`);
and the paper profile is the typed defaults except for the keys that make a profile a profile."""

import importlib

import pytest
import yaml

from dcpclip.config import ExperimentConfig
from dcpclip.config_schema import to_dict
from experiments.compose import compose_config, compose_dict, group_options

# Where the composed paper profile differs from the typed defaults, and why. The typed defaults are the
# paper's recipe (train, eval, head) with the tiny backbone that tests build without a config.
PAPER_PROFILE_KEYS = {
    "profile": "the profile's name",
    "backbone.arch": "the paper's CLIP (the typed default is the tiny test model)",
    "backbone.pretrained": "OpenAI's weights",
    "backbone.quick_gelu": "OpenAI's CLIPs use QuickGELU",
    "backbone.image_size": "the paper's 384 window",
    "backbone.intermediate_blocks": "skip features of ViT-B/16 blocks",
    "data.source": "the real datasets",
    "data.raw_root": "per-profile data folders",
    "data.root": "per-profile data folders",
    "data.num_workers": "a GPU box's data loader",
    "pretrain.dir": "per-profile model folders",
    "eval.amp": "bf16 autocast on the GPU",
    "grid.cpus_per_trial": "one GPU and 4 CPUs per trial",
    "grid.gpus_per_trial": "one GPU and 4 CPUs per trial",
}


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


TYPED = flat(to_dict(ExperimentConfig()))
# sections the paper profile does not use: its data are real (no synthetic generation) and its CLIP is not
# pre-trained here (pretrain=none)
UNUSED_BY_PAPER = ("data.synthetic.", "pretrain.train.", "pretrain.dense_loss_weight")


@pytest.mark.parametrize("overrides", [[], *([f"model={m}"] for m in group_options("model")),
                                       *([f"variant={v}"] for v in group_options("variant")),
                                       ["pretrain=none"], ["data=real"], ["train=paper", "eval=paper"]])
def test_every_typed_key_has_a_value_in_the_yaml_tree(overrides):
    written = flat(compose_dict(overrides))
    allowed = UNUSED_BY_PAPER if set(overrides) & {"pretrain=none", "data=real"} else ()
    missing = sorted(k for k in set(TYPED) - set(written) if not k.startswith(allowed))
    assert not missing, f"typed keys without a value in experiments/conf (add them with a comment): {missing}"
    assert not sorted(set(written) - set(TYPED)), "YAML keys no dataclass declares"


def test_the_paper_profile_leaves_out_only_the_sections_it_does_not_use():
    missing = set(TYPED) - set(flat(compose_dict(["profile=paper"])))
    assert missing and all(key.startswith(UNUSED_BY_PAPER) for key in missing), sorted(missing)


def test_the_paper_profile_is_the_typed_defaults_but_for_the_profile_keys():
    paper = flat(to_dict(compose_config(["profile=paper"])))
    differing = {key for key in TYPED if paper[key] != TYPED[key]}
    assert differing == set(PAPER_PROFILE_KEYS), (
        f"unexplained: {sorted(differing - set(PAPER_PROFILE_KEYS))}; "
        f"no longer differing: {sorted(set(PAPER_PROFILE_KEYS) - differing)}")


def test_a_head_key_is_overridden_without_a_plus():
    assert compose_config(["head.presence_prior=0.1"]).head.presence_prior == 0.1
    assert compose_config(["text.template_set=imagenet80"]).text.template_set == "imagenet80"


@pytest.mark.parametrize("module", ["fetch", "prepare", "pretrain", "train", "train_all", "evaluate",
                                    "evaluate_all", "flops", "flops_all", "estimate"])
def test_every_entry_point_prints_the_resolved_config_and_exits(module, capsys):
    main = importlib.import_module(f"experiments.{module}").main
    with pytest.raises(SystemExit) as exit_status:
        main(["variant=no_dual", "head.top_k=5", "--print-config"])
    assert exit_status.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["variant"] == "no_dual" and printed["head"]["top_k"] == 5
    assert printed["head"]["dual"] is False  # the variant applied: the name never disagrees with the model
    assert flat(printed).keys() - {"variant"} == TYPED.keys()  # variant: read off head, printed first
