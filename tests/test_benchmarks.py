"""Smoke tests of the benchmark scripts: each `main` runs end to end at its smallest settings (tiny model,
1 repeat) and prints the rows its table promises. No timing is asserted: speed is what the scripts measure."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    """The script benchmarks/<name>.py as a module (benchmarks/ is not a package)."""
    module_name = f"benchmarks_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses resolve their module by name
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows by their first cell (later tables win on a repeated first cell)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_backbone_speed_sizes_are_width_by_height():
    backbone_speed = load("backbone_speed")
    assert backbone_speed.parse_size("384") == (384, 384)
    assert backbone_speed.parse_size("640x480") == (480, 640)  # (H, W)


def test_backbone_speed_prints_every_size_and_encoding(capsys):
    backbone_speed = load("backbone_speed")
    assert (
        backbone_speed.main(["--model", "tiny", "--sizes", "64", "128x96", "--vocabulary", "40", "--repeats", "1"]) == 0
    )
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert "device cpu" in out and "1 threads" in out
    for size in ("64x64", "128x96"):
        fp32, bf16, ratio, cosine = (float(cell) for cell in rows[size])
        assert fp32 > 0 and bf16 > 0 and float(cosine) > 0.99
    for encoding in (
        "full 77-token context (open_clip encode_text)",
        "cut to longest per length bucket (encode_vocabulary)",
        "TextBankCache.get, first call (encode + save)",
        "TextBankCache.get, cached (hash weights + load)",
        "of which text_weights_digest",
    ):
        assert float(rows[encoding][0]) > 0
    difference = float(re.search(r"max \|full - cut\| over the class embeddings: (\S+)", out).group(1))
    assert difference < 1e-5  # the cut context encodes the same bank


def test_throughput_prints_loop_model_and_head_rows(capsys):
    throughput = load("throughput")
    assert throughput.main(["--setups", "tiny", "--head-setup", "tiny", "--images", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "device cpu" in out
    paths = {tuple(cells[:2]) for cells in (line.strip("|").split("|") for line in out.splitlines()) if len(cells) >= 2}
    paths = {(setup.strip(), path.strip()) for setup, path in paths}
    assert ("tiny", "model alone (views prebuilt), one image per forward") in paths
    assert ("tiny", "model alone, eval.batch_images images per forward (as the loop runs it)") in paths
    assert ("tiny", "evaluation loop (evaluate_benchmark)") in paths
    if throughput.FLUSH_DENORMAL_SUPPORTED:
        assert ("tiny", "evaluation loop, denormals flushed to zero") in paths
    rows = table_rows(out)
    # images, views (4 windows + global), A-150, the offline profile's batch
    assert rows["tiny (dcpclip-tiny)"][1:] == ["1", "5", "150", "8"]
    assert float(rows["zero_shot"][1]) == 1.0
    assert float(rows["full"][0]) > 0 and float(rows["encode_image alone"][0]) > 0


@pytest.mark.slow
def test_parallel_training_prints_every_arm_and_variant(capsys):
    parallel_training = load("parallel_training")
    assert (
        parallel_training.main(["--variants", "full", "no_dual", "--iterations", "1", "--sequential-threads", "1"]) == 0
    )
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert float(rows["sequential in one process, train.threads=1"][1]) == 1.0
    ray_rows = [cells for name, cells in rows.items() if name.startswith("Ray train stage")]
    assert len(ray_rows) == 1 and float(ray_rows[0][0]) > 0
    assert set(rows) >= {"full", "no_dual"} and "no_prune" not in rows
    assert "Ray stage including ray.init" in out and "Ray stage again, Ray running" in out
