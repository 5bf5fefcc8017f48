"""The guard that fails a test session which wrote into the repository's outputs (tests/output_guard.py)."""

import os

from output_guard import changed, snapshot


def test_a_written_added_or_removed_output_is_named_and_an_untouched_tree_is_not(tmp_path):
    record = tmp_path / "results" / "eval" / "a.json"
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "elsewhere.txt").write_text("not guarded")
    before = snapshot(tmp_path)
    assert set(before) == {"results/eval/a.json", "dvc.lock"}
    assert changed(before, snapshot(tmp_path)) == []

    (tmp_path / "elsewhere.txt").write_text("still not guarded")
    stat = record.stat()
    record.write_text("{}")  # the same bytes, written again
    os.utime(record, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "README.md").write_text("# report")
    (tmp_path / "dvc.lock").unlink()
    assert changed(before, snapshot(tmp_path)) == ["dvc.lock", "reports/README.md", "results/eval/a.json"]
