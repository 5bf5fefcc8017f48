"""The report's first screen and its figures from records and prediction samples: the ablation table
opens the report, the recall curve and the qualitative grid are drawn from what the evaluation pass kept,
and a stale sample file (another fingerprint than its record's) is never drawn."""

import io
import re

import numpy as np
import pandas as pd
from PIL import Image

from dcpclip.overlay import OVERLAY_ALPHA, blend, class_color
from dcpclip.prediction_samples import Sample, SampleSet, load_sample_sets, samples_path, write_samples
from dcpclip.records import EvalRecord
from dcpclip.report import qualitative
from dcpclip.report.aggregate import summary_table
from dcpclip.report.figures import recall_at_k
from dcpclip.report.render import ReportSettings, render_report
from tests.test_report import scenario, table_rows


def sample_set(record: EvalRecord, fingerprint: str | None = None, images: int = 3) -> SampleSet:
    rng = np.random.default_rng(record.seed)
    samples = [Sample(f"img{i}", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
                      np.where(rng.random((24, 32)) < 0.1, 255, rng.integers(0, 20, (24, 32))),
                      rng.integers(0, 20, (24, 32))) for i in range(images)]
    return SampleSet(record.profile, record.arch, record.variant, record.seed, record.benchmark,
                     fingerprint or record.config_fingerprint, [f"c{i}" for i in range(20)], 255, samples)


def pas20_records() -> list[EvalRecord]:
    return [r for r in scenario() if isinstance(r, EvalRecord) and r.benchmark == "pas20"]


def test_the_report_opens_with_the_ablation_table_and_separate_verdicts():
    markdown = render_report(scenario(), pd.DataFrame(), ReportSettings()).markdown
    sections = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Ablations"
    ablations = table_rows(markdown, "## Ablations")
    # mIoU six-benchmark mean ± std over the two seeds of full, Δ, GMACs at C=20 and C=847 (ViT-B-16), head
    assert ablations["`full`"][1:] == ["2", "35.17 ± 0.94", "reference", "88.00", "90.00", "3,456"]
    assert ablations["`no_prune`"][0].startswith("`prune=false`: ")
    assert ablations["`no_prune`"][3:6] == ["-1.35", "86.00", "250.00"]
    first_screen = markdown.split("## mIoU (%)")[0]
    assert first_screen.index("### Cost claims") < first_screen.index("### Accuracy claims")
    assert not re.search(r"± 0\.0+(?![0-9])", markdown)  # zero stds are dropped
    assert "<details>" in markdown.split("## Provenance")[1]


def test_recall_curve_is_drawn_only_from_records_that_carry_one():
    records = scenario()
    assert recall_at_k(summary_table(records), "offline", ["full", "no_prune"]).startswith(b"\x89PNG")
    flat = [r.__class__(**{**r.__dict__, "pruner_recall_at_k": None, "pruner_recall": None})
            if isinstance(r, EvalRecord) else r for r in records]
    assert recall_at_k(summary_table(flat), "offline", ["full"]) is None


def test_the_qualitative_grid_draws_current_samples_only(tmp_path):
    records = pas20_records()
    by_variant = {(r.variant, r.seed): r for r in records}
    current = [sample_set(by_variant["full", 0]), sample_set(by_variant["full", 1]),
               sample_set(by_variant["no_prune", 0])]
    stale = sample_set(by_variant["no_prune", 0], fingerprint="an-older-evaluation")
    chosen = qualitative.current_sets([stale, *current], records, "pas20")
    assert {v: s.seed for v, s in chosen.items()} == {"full": 0, "no_prune": 0}
    assert chosen["no_prune"] is current[2]
    assert qualitative.current_sets([stale], records, "pas20") == {}
    assert qualitative.grid([stale], records, "pas20") is None

    for s in current:  # through the files the evaluation pass writes, as the report stage reads them
        folder = tmp_path / "eval" / "offline" / s.arch / s.variant / f"seed{s.seed}"
        write_samples(samples_path(folder / "pas20.json"), s)
    loaded = load_sample_sets(tmp_path, "offline")
    report = render_report(scenario(), pd.DataFrame(), ReportSettings(), samples=loaded)
    picture = Image.open(io.BytesIO(report.figures["qualitative_pas20.png"]))
    assert picture.width > picture.height  # 6 columns of 3 rows
    assert "![predictions on PAS-20](figures/qualitative_pas20.png)" in report.markdown
    assert "*predictions on A-847: not drawn" in report.markdown and "qualitative_a847.png" not in report.figures


def test_blend_colours_labels_and_leaves_unlabelled_pixels_as_they_are():
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    labels = np.zeros((4, 4), dtype=np.int64)
    labels[:, 2:] = 5
    unlabelled = np.zeros((4, 4), dtype=bool)
    unlabelled[2:, :2] = True  # a 2 x 2 block: its lower-left pixel is off every border
    picture = blend(image, labels, 6, unlabelled)
    expected = np.round((1 - OVERLAY_ALPHA) * 100 + OVERLAY_ALPHA * np.array(class_color(0)))
    assert np.array_equal(picture[0, 0], expected) and np.array_equal(picture[3, 0], image[3, 0])
    assert np.array_equal(picture[0, 3], np.round((1 - OVERLAY_ALPHA) * 100 + OVERLAY_ALPHA * np.array(class_color(5))))
    assert (picture[0, 1] == 20).all()  # the border between classes 0 and 5
