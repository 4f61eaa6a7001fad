"""Issue 40, class 6: a report covers the folder asked. A study's tables and report read its own records/, never
another run's output folder below it (the demo's outputs/demo); --report DIR merges every records/ folder under DIR
and says which it read; an OSError of --report is one sentence."""
from __future__ import annotations

import json
import subprocess

import pytest

import main
from tests.conftest import tmpfs, unchanged
from tests.report.test_hostile_records import record, write
from tests.study.test_study import FAST, summary
from utils.core.errors import cli_boundary


@pytest.mark.slow
def test_a_studys_report_holds_its_own_records_and_report_dir_says_what_it_merged(tmp_path, capsys):
    out = tmp_path / "outputs"
    write(out / "demo", "demo.json", record(network="efficientnet_lite0", backend="torch", top1=85.0))  # the demo's
    argv = ["-v", "--network", "resnet18", "--synthetic", "4", "--batch_sizes", "2", "--output", str(out), *FAST]
    assert cli_boundary(main.main, argv) == 0
    assert summary(capsys.readouterr().out)[1] == 2
    page = (out / "report.html").read_text()
    assert "efficientnet_lite0" not in page and "read from" not in page
    assert not any("efficientnet_lite0" in p.name for p in (out / "table_outputs").iterdir())
    with unchanged(out / "records", out / "demo" / "records"):  # --report never writes a record
        assert cli_boundary(main.main, ["--report", str(out)]) == 0  # merging: every records/ folder, named
    said = capsys.readouterr().out
    assert f"records read from {out / 'demo' / 'records'} (1), {out / 'records'} (2)" in said
    page = (out / "report.html").read_text()
    assert "efficientnet_lite0" in page and "read from demo/records (1), records (2)" in page


def test_report_on_a_read_only_folder_is_one_sentence(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", size="1m") as mnt:
        write(mnt, "a.json", record())
        assert subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode == 0
        rc = cli_boundary(main.main, ["--report", str(mnt), "--quiet"])
        err = capsys.readouterr().err
        assert json.loads((mnt / "records" / "a.json").read_text())["top1"] == 70.0
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: --report could not write its tables, plots and report into {mnt} (Read-only "
                               "file system"), lines


def test_a_records_folder_that_is_a_link_is_the_folders_own(tmp_path, capsys):
    """Found by a hostile pass: output/records as a link to another disk was taken for a full disk."""
    store = tmp_path / "store"
    store.mkdir()
    out = tmp_path / "o"
    out.mkdir()
    (out / "records").symlink_to(store)
    rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--synthetic", "4", "--batch_size", "2",
                                  "--output", str(out), *FAST])
    said = capsys.readouterr()
    assert rc == 0, said.err
    assert len(list(store.glob("validate-*.json"))) == 2 and (out / "report.html").is_file()


def test_a_record_without_env_unreadable_files_and_a_file_for_a_folder(tmp_path, capsys, caplog):
    out = tmp_path / "r"
    write(out, "no-env.json", {k: v for k, v in record().items() if k != "env"})
    write(out, "empty.json", {})
    write(out, "null.json", "null")
    (out / "records" / "dangling.json").symlink_to(tmp_path / "nowhere.json")
    assert cli_boundary(main.main, ["--report", str(out)]) == 0  # no KeyError on the missing env
    err = capsys.readouterr().err
    for name in ("empty.json", "null.json"):
        assert f"skipped {out / 'records' / name}: not an ArtTRT record (no record_version)" in err
    assert f"skipped {out / 'records' / 'dangling.json'}: not a regular file" in err
    assert cli_boundary(main.main, ["--report", str(out / "report.html")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
