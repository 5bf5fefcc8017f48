"""params.yaml -> Hydra overrides: the settings users change (what `dvc exp run -S` writes) compose into
the config the stages run, null keeps the profile's value, and a mistake is an error naming the key."""

from pathlib import Path

import pytest
import yaml

from dcpclip.config_schema import ConfigError
from experiments.compose import compose_config
from experiments.params_file import SETTINGS, pipeline_overrides

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_repository_params_name_every_setting_null_so_the_offline_profile_runs_as_defined():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert {f"{section}.{key}": value for section, block in params.items() if isinstance(block, dict)
            for key, value in block.items()} == dict.fromkeys(SETTINGS)
    assert params["profile"] == "offline" and params["overrides"] == []
    assert pipeline_overrides(REPO / "params.yaml") == ["profile=offline"]
    assert compose_config(pipeline_overrides(REPO / "params.yaml")) == compose_config([])


def test_each_setting_reaches_the_composed_config(tmp_path):
    path = write(tmp_path, {"profile": "offline", "grid": {"variants": ["full", "no_dual"], "seeds": [0, 1, 2]},
                            "data": {"benchmarks": ["pc59"]}, "head": {"top_k": 16}, "train": {"iterations": 50},
                            "overrides": ["eval.flops_images=2"]})
    overrides = pipeline_overrides(path)
    assert overrides == ["profile=offline", "grid.variants=[full,no_dual]", "grid.seeds=[0,1,2]",
                         "data.benchmarks=[pc59]", "head.top_k=16", "train.iterations=50", "eval.flops_images=2"]
    cfg = compose_config(overrides)
    assert (list(cfg.grid.variants), list(cfg.grid.seeds), list(cfg.data.benchmarks)) == (
        ["full", "no_dual"], [0, 1, 2], ["pc59"])
    assert (cfg.head.top_k, cfg.train.iterations, cfg.eval.flops_images) == (16, 50, 2)


def test_a_null_setting_keeps_the_profile_value(tmp_path):
    path = write(tmp_path, {"profile": "paper", "head": {"top_k": None}, "grid": None})
    assert pipeline_overrides(path) == ["profile=paper"]


@pytest.mark.parametrize("params, named", [
    ({"profile": "offline", "gird": {"seeds": [0]}}, "'gird'"),
    ({"profile": "offline", "head": {"topk": 16}}, "head: expected a mapping of top_k"),
    ({"profile": "offline", "head": 16}, "head: expected a mapping of top_k"),
    ({"profile": "offline", "head": {"top_k": 16}, "overrides": ["head.top_k=8"]}, "head.top_k is set both"),
    ({"profile": "offline", "overrides": "head.top_k=8"}, "overrides: expected a list of strings"),
])
def test_a_mistake_is_an_error_naming_the_file_and_the_key(tmp_path, params, named):
    path = write(tmp_path, params)
    with pytest.raises(ConfigError) as error:
        pipeline_overrides(path)
    assert str(path) in str(error.value) and named in str(error.value)
