import dataclasses
import json
import typing

import pytest

from dcpclip import paths
from dcpclip.config import ExperimentConfig
from dcpclip.config_schema import to_dict
from dcpclip.data.specs import SPECS
from dcpclip.profiles import EVAL_PROFILES
from dcpclip.records import (
    EvalRecord,
    FlopsRecord,
    InferenceSettings,
    RecordError,
    SegmentationMetrics,
    TrainStepRecord,
    load_record,
    load_records,
    write_record,
)

ENV = {"python": "3.11.9", "packages": {"torch": "2.14.1"}, "device": "cpu (test)", "git_commit": "abc123"}


def eval_record(**changes) -> EvalRecord:
    spec = SPECS[changes.get("benchmark", "pas20")]
    record = EvalRecord(
        profile="offline", variant="full", seed=0, arch="dcpclip-tiny", benchmark=spec.key, split="val",
        num_classes=spec.num_classes, num_prompts=spec.num_prompts, num_images=8, data_source="synthetic",
        clip_weights=None,
        inference=InferenceSettings(mode="sliding", short_side=96, window=64, stride=32, views=5),
        metrics=SegmentationMetrics(mIoU=12.5, fwIoU=30.0, mAcc=20.0, pAcc=45.0),
        per_class_iou={f"class{i}": (None if i == 0 else 12.5) for i in range(spec.num_classes)},
        pruner_recall=0.75, pruner_recall_at_k={"4": 0.5, "8": 0.75, "16": 1.0},
        config_fingerprint="0123456789abcdef", train_fingerprint="fedcba9876543210",
        code_digest="00112233aabbccdd", command="python -m experiments.evaluate variant=full seed=0", environment=ENV,
    )
    return dataclasses.replace(record, **changes)


def flops_record(**changes) -> FlopsRecord:
    record = FlopsRecord(
        profile="offline", variant="full", benchmark="a847", arch="dcpclip-tiny", resolution=(64, 64),
        views=5, num_classes=847, text_encoder_included=False, gmacs_mean=0.5, gmacs_std=0.01, num_images=4,
        params_total=1000, params_trainable=100, params_head=200, skipped_ops=["aten::add"],
        config_fingerprint="0123456789abcdef", code_digest="44556677eeff0011",
        command="python -m experiments.flops variant=full", environment=ENV,
    )
    return dataclasses.replace(record, **changes)


def train_step_record(**changes) -> TrainStepRecord:
    record = TrainStepRecord(
        profile="paper-arch", variant="full", arch="ViT-B-16", trains=True, train_dataset="coco_stuff",
        crop_size=384, batch_size=4, num_classes=171, text_encoder_trains=True, image_gmacs=67.5,
        text_encoder_gmacs=71.5, step_gmacs=3 * (4 * 67.5 + 71.5), iterations=80000, seeds=1,
        params_trainable=100, config_fingerprint="0123456789abcdef", code_digest="44556677eeff0011",
        command="python -m experiments.flops variant=full --paper-arch vitb16", environment=ENV,
    )
    return dataclasses.replace(record, **changes)


def test_profiles_mirror_the_experiment_config():
    hint = typing.get_type_hints(ExperimentConfig)["profile"]
    assert EVAL_PROFILES == typing.get_args(hint)


@pytest.mark.parametrize("record", [eval_record(), eval_record(variant="zero_shot", train_fingerprint=None,
                                                                pruner_recall=None, pruner_recall_at_k=None),
                                    flops_record(),
                                    train_step_record()])
def test_round_trip_through_json(tmp_path, record):
    path = write_record(record, tmp_path / "r.json")
    assert load_record(path) == record
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # the temporary file was renamed away
    data = json.loads(path.read_text())
    assert data["kind"] == record.kind and data["schema_version"] == 4


def test_records_at_the_config_paths_load_in_a_stable_order(tmp_path):
    cfg = ExperimentConfig(results_dir=str(tmp_path))
    for seed in (1, 0):
        for bench in ("pas20", "a847"):
            seeded = dataclasses.replace(cfg, seed=seed)
            write_record(eval_record(seed=seed, benchmark=bench), paths.eval_record_path(seeded, bench))
    write_record(flops_record(), paths.flops_record_path(cfg, "a847"))
    paper_arch = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, arch="ViT-B-16"))
    write_record(flops_record(profile="paper-arch", arch="ViT-B-16", resolution=(384, 384)),
                 paths.paper_arch_flops_record_path(paper_arch, "a847"))
    write_record(train_step_record(), paths.train_step_record_path(paper_arch, "paper-arch"))
    (tmp_path / "environment.json").write_text("{}")  # not a record: ignored
    records = load_records(tmp_path)
    assert [(r.kind, r.profile, getattr(r, "seed", None), getattr(r, "benchmark", None)) for r in records] == [
        ("eval", "offline", 0, "a847"), ("eval", "offline", 0, "pas20"),
        ("eval", "offline", 1, "a847"), ("eval", "offline", 1, "pas20"),
        ("flops", "offline", None, "a847"), ("flops", "paper-arch", None, "a847"),
        ("train_step", "paper-arch", None, None),
    ]
    assert "paper-arch/ViT-B-16/full/a847.json" in str(paths.paper_arch_flops_record_path(paper_arch, "a847"))


def test_duplicate_measurement_names_both_files(tmp_path):
    first = write_record(eval_record(), tmp_path / "eval" / "a" / "pas20.json")
    second = write_record(eval_record(), tmp_path / "eval" / "b" / "pas20.json")
    with pytest.raises(RecordError) as err:
        load_records(tmp_path)
    assert str(first) in str(err.value) and str(second) in str(err.value)


def test_record_in_the_wrong_folder_is_an_error(tmp_path):
    path = write_record(flops_record(), tmp_path / "eval" / "x.json")
    with pytest.raises(RecordError, match="a 'flops' record under"):
        load_records(tmp_path)
    assert path.exists()


def _broken(data: dict, key: str, value):
    data = json.loads(json.dumps(data))
    target = data
    *parents, last = key.split(".")
    for parent in parents:
        target = target[parent]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("metrics.mIoU", "high", "metrics.mIoU: expected a number"),
        ("metrics.mIoU", 120.0, "metrics.mIoU: 120.0 is not a percentage"),
        ("inference.mode", "tiles", "inference.mode: invalid value 'tiles'"),
        ("command", _DELETE, "missing 1 required keyword-only argument: 'command'"),
        ("extra", 1, "unknown config key extra"),
        ("kind", "log", "kind: 'log' is not one of"),
        ("schema_version", 1, "schema_version: 1 is not the supported 4"),
        ("code_digest", _DELETE, "missing 1 required keyword-only argument: 'code_digest'"),
        ("benchmark", "coco_stuff", "benchmark: 'coco_stuff' is not one of"),
        ("data_source", "scraped", "data_source: 'scraped' is not one of real, synthetic"),
        ("num_classes", 21, "num_classes: 21 but PAS-20 has 20"),
        ("variant", "no_such", "variant: unknown variant 'no_such'"),
        ("train_fingerprint", None, "train_fingerprint: null, but variant 'full' is trained"),
        ("pruner_recall", 1.5, "pruner_recall: 1.5 is not a fraction"),
        ("pruner_recall_at_k.8", 1.25, "pruner_recall_at_k.8: 1.25 is not a fraction"),
        ("pruner_recall_at_k", {"0": 0.5}, "pruner_recall_at_k.0: the key is not a K >= 1"),
        ("pruner_recall_at_k", None, "pruner_recall_at_k: null exactly when pruner_recall is"),
        ("per_class_iou.class3", -1.0, "per_class_iou.class3: -1.0 is not a percentage"),
    ],
)
def test_malformed_record_names_the_file_and_the_key(tmp_path, key, value, message):
    path = tmp_path / "eval" / "offline" / "full" / "seed0" / "pas20.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_broken(to_dict(eval_record()), key, value)))
    with pytest.raises(RecordError) as err:
        load_records(tmp_path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_classes": 20, "benchmark": "pas20b"}, "num_classes: 20 but PAS-20b gives the model 59"),
        ({"resolution": (64,)}, "resolution: [64] is not [H, W]"),
        ({"gmacs_mean": float("nan")}, "gmacs_mean: nan is not a finite"),
        ({"params_trainable": 2000}, "params_trainable: 2000 not in 0..params_total (1000)"),
        ({"params_head": -1}, "params_head: -1 not in 0..params_total (1000)"),
        ({"profile": "paper-arch-b"}, "profile: 'paper-arch-b' is not one of offline, paper, paper-arch"),
    ],
)
def test_invalid_flops_records_are_refused_on_write(tmp_path, changes, message):
    with pytest.raises(RecordError, match="refusing to write") as err:
        write_record(flops_record(**changes), tmp_path / "f.json")
    assert message in str(err.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"step_gmacs": 4 * 67.5 + 71.5},
         "step_gmacs: 341.5 is not 3 x (batch_size x image_gmacs + text_encoder_gmacs)"),
        ({"variant": "zero_shot"}, "trains: True but variant 'zero_shot' is training-free"),
        ({"num_classes": 150}, "num_classes: 150 but COCO-Stuff has 171 class names"),
        ({"train_dataset": "a150"}, "train_dataset: 'a150' is not one of coco_stuff"),
        ({"iterations": 0}, "iterations: 0 < 1"),
        ({"text_encoder_trains": False}, "text_encoder_gmacs: 71.5, but the text encoder does not train"),
    ],
)
def test_invalid_train_step_records_are_refused_on_write(tmp_path, changes, message):
    with pytest.raises(RecordError, match="refusing to write") as err:
        write_record(train_step_record(**changes), tmp_path / "t.json")
    assert message in str(err.value)


def test_a_training_free_variant_prices_no_step(tmp_path):
    free = train_step_record(variant="zero_shot", trains=False, text_encoder_trains=False, image_gmacs=0.0,
                             text_encoder_gmacs=0.0, step_gmacs=0.0)
    assert load_record(write_record(free, tmp_path / "z.json")) == free
    with pytest.raises(RecordError, match="step_gmacs: 1.0 is not"):
        write_record(dataclasses.replace(free, step_gmacs=1.0), tmp_path / "z.json")


def test_eval_profile_cannot_be_paper_arch(tmp_path):
    with pytest.raises(RecordError, match="profile: 'paper-arch' is not one of offline, paper"):
        write_record(eval_record(profile="paper-arch"), tmp_path / "e.json")


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "flops" / "offline" / "full" / "a847.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"kind": "flops",')
    with pytest.raises(RecordError, match=f"{path}: not valid JSON"):
        load_records(tmp_path)
