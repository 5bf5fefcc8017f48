"""Training curves as DVCLive metric files (`<run_dir>/dvclive`), for both trainings (`experiments.train`,
`experiments.pretrain`): no dvc.yaml, no git or DVC experiment side effects, and resume-aware (the rows an
interrupted process logged after its last checkpoint are dropped, since they are redone)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

from dcpclip.atomic import write_text


class DVCLiveSink:
    """`dcpclip.engine.trainer.MetricsSink` writing DVCLive metric files; resume-aware."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.live = None

    def start(self, step: int) -> None:
        from dvclive import Live

        if step > 0:
            self.drop_after(step)
        self.live = Live(str(self.directory), resume=step > 0, save_dvc_exp=False, dvcyaml=False, report=None)

    def drop_after(self, step: int) -> None:
        """Remove rows an interrupted process logged after its last checkpoint (they are redone)."""
        for path in sorted((self.directory / "plots" / "metrics").rglob("*.tsv")):
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f, delimiter="\t")
                fields, rows = reader.fieldnames, [r for r in reader if int(r["step"]) <= step]
            text = io.StringIO()
            writer = csv.DictWriter(text, fields, delimiter="\t", lineterminator=os.linesep)
            writer.writeheader()
            writer.writerows(rows)
            write_text(path, text.getvalue())

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.live.step = step
        for name, value in metrics.items():
            self.live.log_metric(name, value)
        self.live.make_summary()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
            self.live = None
