import subprocess

from dcpclip.environment import environment_stamp, git_commit


def git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_git_commit_is_dirty_for_code_changes_but_not_for_pipeline_outputs(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    for output in ("results/eval/a.json", "reports/README.md"):
        (tmp_path / output).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / output).write_text("{}\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_commit(tmp_path / "pkg") == head
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # what a running `dvc repro` does
    (tmp_path / "results/eval/a.json").write_text('{"mIoU": 1}\n')  # and its earlier records and reports
    (tmp_path / "reports/README.md").write_text("# report\n")
    assert git_commit(tmp_path / "pkg") == head
    (tmp_path / "code.py").write_text("y = 2\n")  # untracked files do not count either
    assert git_commit(tmp_path / "pkg") == head
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "pkg") == head + "+dirty"


def test_outside_git_there_is_no_commit(tmp_path):
    assert git_commit(tmp_path) is None


def test_stamp_names_versions_and_device():
    stamp = environment_stamp()
    assert stamp["packages"]["torch"].startswith("2.14.1") and stamp["device"].startswith("cpu")
