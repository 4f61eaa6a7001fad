"""Fault injection, for real on small data: signals during the first pass, a sweep and a copy; damaged, truncated
and edited caches and artefacts; files changed behind the cache's back; concurrent runs; folders that cannot be
written. Each case checks that the result is right or refused in one sentence, that nothing half-written is
left under a final name, and that nothing the user owns changed."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import main
from tests.conftest import tmpfs
from utils.core.errors import cli_boundary

ROOT = Path(__file__).resolve().parent.parent
LITE = ["--network", "efficientnet_lite0", "--pretrained"]


def snapshot(folder: Path) -> dict:
    """Every file under folder with the hash of its bytes: what the user owns."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def records(out: Path) -> list:
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


def parts(*folders: Path) -> list:
    return [p for f in folders if f.exists() for p in f.rglob("*.part")]


@pytest.fixture(scope="module")
def big_photos(tmp_path_factory, demo_data):
    """The 20 labelled photos, upscaled to 900x675 and copied 30 times each (600 files, 20 classes): a first pass
    that lasts a few seconds on two cores, long enough to be interrupted."""
    root = tmp_path_factory.mktemp("big") / "photos"
    for src in sorted(Path(demo_data).rglob("*.jpg")):
        img = Image.open(src).convert("RGB").resize((900, 675))
        (root / src.parent.name).mkdir(parents=True, exist_ok=True)
        for k in range(30):
            img.save(root / src.parent.name / f"{src.stem}-{k:02d}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def clean_top1(big_photos, tmp_path_factory):
    """top-1 of an undisturbed run over the same 40 images: what every rerun after a fault must give."""
    t = tmp_path_factory.mktemp("clean")
    assert main.main(["-v", *LITE, "--dataset", str(big_photos), "--cache_dir", str(t / "c"), "--workers", "2",
                      "--limit", "40", "--batch_size", "20", "--output", str(t / "o"), "--quiet"]) == 0
    return records(t / "o")[0]["top1"]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(argv: list, **kw) -> subprocess.Popen:
    """The script as a user's terminal starts it: Ctrl-C's SIGINT at its default, also where this test session
    runs in the background (a shell without job control starts background jobs with SIGINT ignored, and a child
    inherits that: Python then never raises KeyboardInterrupt, and a clean-clone CI run in the background saw
    these tests' SIGINT cases exit 0)."""
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint, **kw)


def wait_for(predicate, timeout: float = 60.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_a_signal_in_the_first_pass_loses_nothing_and_the_rerun_is_right(big_photos, clean_top1, tmp_path, sig,
                                                                          code):
    before = snapshot(big_photos)
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["main.py", "-v", *LITE, "--dataset", str(big_photos), "--cache_dir", str(cache), "--workers", "2",
            "--limit", "40", "--batch_size", "20", "--output", str(out), "--quiet"]
    p = start(argv)
    assert wait_for(lambda: bool(parts(cache))), "the first pass never started writing"
    time.sleep(0.1)  # well inside the first pass (about 2 s here): the network is loaded before it starts
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    if sig != signal.SIGKILL:
        assert "records written so far are kept" in err and not parts(cache)  # caught: nothing left behind
    assert not list(cache.glob("*.json"))  # no cache that looks valid
    assert snapshot(big_photos) == before
    rerun = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert not parts(cache)  # a killed writer's leftovers are swept by the next writer
    rec = records(out)[-1]
    assert rec["images"] == 40 and rec["top1"] == clean_top1


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_in_a_sweep_keeps_every_finished_record(tmp_path, sig, code):
    out = tmp_path / "out"
    p = start(["main.py", "-v", "--network", "mobilenet_v3_small", "--synthetic", "48", "--batch_sizes", "1", "2",
               "4", "8", "16", "--min_warmup_s", "0", "--output", str(out), "--quiet"])
    assert wait_for(lambda: len(list((out / "records").glob("*.json"))) >= 1)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code and "records written so far are kept" in err
    recs = records(out)  # every file there is a whole record
    assert 1 <= len(recs) < 5 and all(r["images"] == 48 for r in recs) and not parts(out)


SERVE = ["main.py", "-v", "--network", "mobilenet_v3_small", "--synthetic", "64", "--scenario", "offline", "server",
         "--target_qps", "40", "--max_batch", "8", "--duration", "4", "--quiet"]


def _in_server_run(out: Path) -> bool:
    """LoadGen's Server performance run has started: LoadGen writes its detail log from inside the run (the Offline
    job's record and run come first)."""
    return bool(list((out / "records").glob("*.json"))) and \
        len(list(out.glob("loadgen/*/performance/mlperf_log_detail.txt"))) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("sigs, code", [((signal.SIGINT,), 130), ((signal.SIGTERM,), 143),
                                        ((signal.SIGINT, signal.SIGINT), 130),  # a study's parent forwards it again
                                        ((signal.SIGINT, signal.SIGTERM), 143)])
def test_a_signal_during_a_loadgen_run_stops_when_the_run_ends(tmp_path, sigs, code):
    """A signal raised inside a LoadGen callback unwound through LoadGen's C++ (exit -11, a segfault, on this
    machine): it is held until the run ends, then acts as anywhere else (SIGTERM before SIGINT), and the finished
    records stay."""
    pytest.importorskip("mlperf_loadgen")
    out = tmp_path / "out"
    p = start([*SERVE, "--output", str(out)])
    assert wait_for(lambda: _in_server_run(out), timeout=120), "the Server run never started"
    for sig in sigs:
        time.sleep(0.3)
        p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "stopping when the LoadGen run 'performance' ends" in err and "records written so far are kept" in err
    recs = records(out)  # the Offline job's whole record; the interrupted Server job wrote none
    assert [r["scenario"] for r in recs] == ["offline"] and not parts(out)


def test_a_kill_during_a_copy_leaves_only_whole_files(big_photos, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted(big_photos.rglob("*.jpg"))[:300]):  # synset-suffixed names
        os.link(f, flat / f"ILSVRC2012_val_{i:08d}_{f.parent.name}.JPEG")
    before = snapshot(flat)
    dst = tmp_path / "dst"
    p = start(["format_dataset.py", "--src", str(flat), "--dst", str(dst), "--copy"])
    assert wait_for(lambda: dst.exists() and len(list(dst.rglob("*.JPEG"))) >= 20)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    for f in dst.rglob("*.JPEG"):  # every file under a final name is whole
        assert f.read_bytes() == (flat / f.name).read_bytes()
    assert subprocess.run([sys.executable, "format_dataset.py", "--src", str(flat), "--dst", str(dst), "--copy"],
                          cwd=ROOT, capture_output=True).returncode == 0
    assert len(list(dst.rglob("*.JPEG"))) == 300 and not parts(dst) and snapshot(flat) == before


@pytest.mark.slow
def test_a_cache_changed_under_a_run_is_refused_then_rebuilt(demo_data, tmp_path, monkeypatch, capsys):
    """Rows zeroed where the sampled digests do not look (here: after the load) are caught on the read itself."""
    import utils.study.validate as validate

    real = validate.measure

    def damage_then_measure(runner, dataset, *a, **k):
        path = Path(dataset.meta["_sidecar"]).with_suffix(".u8")
        with open(path, "r+b") as f:  # the row of one image, zeroed on disk (the map sees it)
            f.seek(7 * int(np.prod(dataset.images.shape[1:])))
            f.write(bytes(int(np.prod(dataset.images.shape[1:]))))
        return real(runner, dataset, *a, **k)

    argv = ["-v", *LITE, "--dataset", str(demo_data), "--cache_dir", str(tmp_path / "c"), "--batch_size", "5",
            "--output", str(tmp_path / "o"), "--quiet"]
    monkeypatch.setattr(validate, "measure", damage_then_measure)
    assert cli_boundary(main.main, argv) == 2
    assert "1 of 20 images read from the dataset cache differ from what was written" in capsys.readouterr().err
    assert not (tmp_path / "o" / "records").exists() or not records(tmp_path / "o")  # no figure kept
    monkeypatch.setattr(validate, "measure", real)
    assert main.main(argv) == 0  # the sidecar was dropped: rebuilt, right again
    assert records(tmp_path / "o")[-1]["top1"] == 85.0


@pytest.mark.slow
def test_an_edited_cache_meta_is_rebuilt(demo_data, tmp_path):
    argv = ["-v", *LITE, "--dataset", str(demo_data), "--cache_dir", str(tmp_path / "c"), "--batch_size", "10",
            "--output", str(tmp_path / "o"), "--quiet"]
    assert main.main(argv) == 0
    sidecar = next((tmp_path / "c").glob("*.json"))
    meta = json.loads(sidecar.read_text())
    meta["labels"] = [0] * len(meta["labels"])  # every label rewritten: 0 % if believed
    sidecar.write_text(json.dumps(meta))
    assert main.main(argv + ["--force"]) == 0  # measured again (without --force the record is found done)
    assert [r["top1"] for r in records(tmp_path / "o")] == [85.0, 85.0]


@pytest.mark.slow
def test_an_image_replaced_with_its_old_size_and_mtime_is_seen(demo_data, tmp_path):
    """touch -r restores the mtime, not the status-change time: the cache key sees the new pixels."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    argv = ["-v", *LITE, "--dataset", str(data), "--cache_dir", str(tmp_path / "c"), "--batch_size", "10",
            "--output", str(tmp_path / "o"), "--quiet"]
    assert main.main(argv) == 0
    victim = sorted(data.rglob("*.jpg"))[0]
    st = victim.stat()
    noise = np.random.default_rng(0).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    raw = bytearray(victim.read_bytes())
    other = bytearray(Image.fromarray(noise).tobytes()[:len(raw)])  # same size, other content
    victim.write_bytes(bytes(raw[:2]) + bytes(other[2:len(raw)]))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
    assert main.main(argv) == 0
    recs = records(tmp_path / "o")
    assert recs[0]["dataset_key"] != recs[1]["dataset_key"]  # a new cache, not the old pixels
    assert recs[1]["images"] == 19  # the replaced file no longer decodes: skipped and listed, not stale
    assert len(list((tmp_path / "c").glob("*.u8"))) == 1  # the replaced cache was removed


@pytest.mark.slow
def test_a_file_that_could_not_be_read_is_tried_again(demo_data, tmp_path, monkeypatch):
    import utils.data.lanes as lanes

    victim = sorted(Path(demo_data).rglob("*.jpg"))[3]
    real = Path.read_bytes

    def denied(self):
        if self == victim:
            raise PermissionError(13, "Permission denied")
        return real(self)

    argv = ["-v", *LITE, "--dataset", str(demo_data), "--cache_dir", str(tmp_path / "c"), "--batch_size", "10",
            "--workers", "1", "--output", str(tmp_path / "o"), "--quiet"]
    monkeypatch.setattr(lanes.Path, "read_bytes", denied)
    assert main.main(argv) == 0
    assert records(tmp_path / "o")[-1]["images"] == 19
    monkeypatch.setattr(lanes.Path, "read_bytes", real)  # readable again, size and mtime unchanged
    assert main.main(argv) == 0
    assert records(tmp_path / "o")[-1]["images"] == 20 and records(tmp_path / "o")[-1]["top1"] == 85.0


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_model_files_are_rebuilt_not_trusted(demo_data, tmp_path, damage, capsys):
    argv = ["-v", *LITE, "--dataset", str(demo_data), "--backend", "onnxrt", "--precision", "int8",
            "--calib_size", "20", "--batch_size", "10", "--output", str(tmp_path / "o"), "--quiet"]
    assert main.main(argv) == 0
    weights = Path(os.environ["ARTTRT_WEIGHTS_DIR"])
    for f in list(weights.rglob("*-int8-*.onnx")) + list(weights.rglob("*-fp32-*.onnx")):
        raw = bytearray(f.read_bytes())
        if damage == "flip":
            raw[len(raw) // 2:len(raw) // 2 + 64] = bytes(64)
        f.write_bytes(bytes(raw) if damage == "flip" else bytes(raw[:len(raw) // 3]))
    assert main.main(argv + ["--force"]) == 0
    assert "rebuilding it" in capsys.readouterr().err
    assert [r["top1"] for r in records(tmp_path / "o")] == [records(tmp_path / "o")[0]["top1"]] * 2
    assert records(tmp_path / "o")[0]["top1"] >= 80.0


@pytest.mark.slow
def test_three_runs_at_once_keep_three_records(tmp_path):
    out = tmp_path / "out"
    argv = ["main.py", "-v", "--network", "mobilenet_v3_small", "--synthetic", "4", "--batch_size", "4",
            "--min_warmup_s", "0", "--output", str(out), "--quiet", "--force"]  # each measures (no reuse)
    procs = [start(argv) for _ in range(3)]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    assert len(records(out)) == 3 and not parts(out)


def test_an_output_that_cannot_take_files_is_refused_before_any_work(demo_data, tmp_path, capsys):
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    assert cli_boundary(main.main, ["-v", *LITE, "--dataset", str(demo_data), "--output", str(a_file),
                                    "--quiet"]) == 2
    assert "--output" in capsys.readouterr().err and a_file.read_text() == "mine"
    cache_file = tmp_path / "cache.bin"
    cache_file.write_text("mine")
    assert cli_boundary(main.main, ["-v", *LITE, "--dataset", str(demo_data), "--cache_dir", str(cache_file),
                                    "--output", str(tmp_path / "o"), "--quiet"]) == 2
    assert "--cache_dir" in capsys.readouterr().err and cache_file.read_text() == "mine"


def test_a_full_or_read_only_output_on_a_small_tmpfs(tmp_path, capsys):
    """Where this machine lets a test mount a tmpfs (root in a container usually can)."""
    with tmpfs(tmp_path / "mnt") as mnt:
        (mnt / "filler").write_bytes(bytes(60 * 1024))
        argv = ["-v", "--network", "mobilenet_v3_small", "--synthetic", "4", "--batch_size", "4", "--quiet"]
        assert cli_boundary(main.main, argv + ["--output", str(mnt / "out")]) == 2
        err = capsys.readouterr().err
        assert "cannot be written to" in err or "is full" in err
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        assert cli_boundary(main.main, argv + ["--output", str(mnt)]) == 2
        assert "cannot be written to" in capsys.readouterr().err
