"""The scripts under benchmarks/ still run: each is started as a user would start it, on the CPU, on the
smallest inputs its options allow, and what it prints or writes is checked. Scripts that need a CUDA GPU must
refuse in one sentence, with no traceback.

Every run writes under the test's tmp_path only (--out, --workdir, the ARTTRT_* folders, TMPDIR), never into
the checkout. The subprocesses run with one OpenMP thread: on a small, busy machine PyTorch's default thread
pool oversubscribes the cores and makes a CPU run several times slower (the figures are not checked against
any target, only for being real).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench_env(tmp_path: Path) -> dict:
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "ARTTRT_CACHE_DIR": str(tmp_path / "cache"), "ARTTRT_WEIGHTS_DIR": str(tmp_path / "weights"),
            "ARTTRT_DATASETS_DIR": str(tmp_path / "datasets"), "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp),
            "OMP_NUM_THREADS": "1", "CI": "true"}


def run_script(script: str, *args: object, tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"benchmarks/{script}", *map(str, args)], cwd=ROOT,
                          env=bench_env(tmp_path), capture_output=True, text=True, timeout=timeout,
                          check=False)


def ok(r: subprocess.CompletedProcess) -> str:
    """stdout of a run that must have succeeded (else the run's output is the failure message)."""
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    return r.stdout


def positive(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def jpeg_folder(dst: Path, photos: list[Path]) -> Path:
    """The photos copied as ImageNet-style .JPEG files in two class folders."""
    for i, p in enumerate(photos):
        d = dst / ["n01440764", "n01443537"][i % 2]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / f"img{i}.JPEG")
    return dst


# ---------------------------------------------------------------------------------------------- CPU scripts


@pytest.mark.slow
def test_datapath_makes_caches_and_times_both_passes_on_cpu(tmp_path, foolbox_dir):
    work, out = tmp_path / "work", tmp_path / "out"
    stdout = ok(run_script("datapath.py", "--num_images", 4, "--workers", 1, "--repeat", 2, "--photos", foolbox_dir,
                           "--workdir", work, "--out", out, tmp_path=tmp_path))
    res = json.loads((out / "datapath.json").read_text())
    assert (res["num_images"], res["workers"], res["gpu"], res["device"]) == (4, 1, False, "cpu")
    jpegs = sorted((work / "data").rglob("*.JPEG"))
    assert len(jpegs) == 4 and all(re.fullmatch(r"n\d{8}", p.parent.name) for p in jpegs)  # real wnid folders
    assert "made 4 JPEGs" in stdout
    assert positive(res["mean_jpeg_kb"]) and res["make_s"] >= 0 and res["cache_gb"] >= 0
    runs = res["first_pass_cpu1_runs"]
    assert len(runs) == 2 and all(positive(r) for r in runs)
    assert res["first_pass_cpu1_images_per_s"] == pytest.approx(sum(runs) / 2)  # the median of two
    decoder = res["first_pass_cpu1_decoder"]
    assert (decoder["cpu"], decoder["gpu"], decoder["workers"]) == (4, 0, 1)
    assert positive(res["cached_pass_0_images_per_s"]) and positive(res["cached_pass_1_images_per_s"])
    assert not any(k.startswith(("gpu_", "first_pass_gpu", "photos_")) or k.endswith("_over_cpu") for k in res)
    printed = json.loads(stdout.strip().splitlines()[-1])  # the last line: the figures without the decoder facts
    assert printed == {k: v for k, v in res.items() if "decoder" not in k}


@pytest.mark.slow
def test_decode_profile_times_read_pil_and_write_stages_on_cpu(tmp_path, foolbox_dir):
    folder = jpeg_folder(tmp_path / "jpegs", sorted(foolbox_dir.glob("imagenet_*.jpg"))[:3])
    out = tmp_path / "out"
    stdout = ok(run_script("decode_profile.py", folder, "--num_images", 2, "--chunk", 2, "--workers", 1,
                           "--out", out, tmp_path=tmp_path))
    res = json.loads((out / "decode_profile.json").read_text())
    assert (res.pop("images"), res.pop("chunk")) == (2, 2)  # --num_images of the 3 files
    expected = {"read (16 threads)", "pil/1procs/no-write", "pil/1procs/pwrite-sparse", "pil/1procs/pwrite-fallocated",
                "write-only/1procs/pwrite-sparse", "write-only/1procs/pwrite-fallocated"}
    if Path("/dev/shm").is_dir():
        expected.add("pil/1procs/pwrite-dev-shm")
    assert set(res) == expected  # no decode/* figures without a GPU
    for key, value in res.items():
        assert positive(value), (key, value)
        assert re.search(rf"^{re.escape(key)}\s+[\d,]+ images/s$", stdout, re.MULTILINE), key
    assert json.loads(stdout.strip().splitlines()[-1]) == {"images": 2, "chunk": 2, **res}
    assert not list((tmp_path / "cache").glob("*.u8"))  # the scratch files it writes are removed


@pytest.mark.slow
def test_serving_ceiling_serves_a_near_free_model_through_the_sut_on_cpu(tmp_path):
    """The harness's own ceiling: Offline and the Server search run under LoadGen, their figures come from LoadGen's
    logs (kept under --out), and the ratio to the best runner is the peak over 25,700 when there is a peak."""
    out = ok(run_script("serving_ceiling.py", "--device", "cpu", "--duration", "0.5", "--max_batch", "8",
                        "--num_images", "64", "--crop", "8", "--out", tmp_path / "o", tmp_path=tmp_path, timeout=240))
    res = json.loads(out.splitlines()[0])
    assert res == json.loads((tmp_path / "o" / "serving_ceiling.json").read_text())
    assert res["device"] == "cpu" and res["offline_valid"] is True and positive(res["offline_samples_per_s"])
    assert res["server_steps"] and all(positive(p99) for _, _, p99 in res["server_steps"])
    valid = [q for q, v, _ in res["server_steps"] if v]
    assert res["server_peak_qps"] == (max(valid) if valid else None)
    if valid:
        assert res["x_best_runner_offline"] == round(max(valid) / 25_700, 2)
    assert (tmp_path / "o" / "serving-ceiling" / "offline" / "performance" / "mlperf_log_summary.txt").is_file()
    assert "harness ceiling on cpu: Offline" in out


def test_records_table_prints_each_validation_record_with_the_harness_ratio(tmp_path):
    from utils.report.records import make_record, write_record

    folder = tmp_path / "outputs" / "records"
    keys = ("network", "backend", "precision", "options", "cuda_graph", "batch_size", "images", "timed_images",
            "images_per_s", "latency_all_mean", "latency_model_mean", "top1", "short_batch")
    rows = [  # resnet18's harness ratio is 100 / (4 / 40 ms) = 1, lite0's 50 / (8 / 80 ms) = 0.5, resnet50's none
        ("resnet18", "torch", "fp32", None, False, 4, 10, 8, 100.0, 40.0, 35.0, None, None),
        ("efficientnet_lite0", "onnxrt", "fp16", "cl", True, 8, 20, 16, 50.0, 80.0, 70.5, 75.0, {"handling": "padded"}),
        ("resnet50", "tensorrt", "int8", None, False, 1, 5, 0, None, None, None, None, None),
    ]
    for i, values in enumerate(rows):
        rec = make_record("validate", "python main.py -v", **dict(zip(keys, values)))
        rec["time"] = f"2024-01-01T00:00:0{i}+00:00"  # the table's order
        write_record(rec, folder)
    other = make_record("compare", "python main.py --compare", network="resnet18", batch_size=1)
    write_record(other, folder)  # another kind of record: not listed
    (folder / "notes.json").write_text('{"not": "a record"}')  # foreign JSON: ignored
    stdout = ok(run_script("records_table.py", tmp_path / "outputs", tmp_path=tmp_path))
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["network", "backend", "prec"] and len(lines) == 1 + len(rows)
    a, b, c = (ln.split() for ln in lines[1:])
    assert a == ["resnet18", "torch", "fp32", "-", "no", "4", "10", "8", "100", "40.000", "35.000", "1.000", "-", "-"]
    assert b == ["efficientnet_lite0", "onnxrt", "fp16", "cl", "yes", "8", "20", "16", "50", "80.000", "70.500",
                 "0.500", "75.0", "padded"]
    assert c == ["resnet50", "tensorrt", "int8", "-", "no", "1", "5", "0", "0", "0.000", "0.000", "nan", "-", "-"]


@pytest.mark.slow
def test_cpu_figures_runs_main_py_and_reports_medians(tmp_path):
    """The tiniest setting its options allow (one repeat, one random image, four JPEGs): it still runs main.py
    six times (two demos, the validation, two data runs, a 256-input --compare), about a minute on 2 cores."""
    out = tmp_path / "figures.json"
    stdout = ok(run_script("cpu_figures.py", "--repeat", 1, "--images", 1, "--jpegs", 4, "--out", out,
                           tmp_path=tmp_path, timeout=400))
    figures = json.loads(out.read_text())
    repo = str(ROOT)
    assert list(figures["median"]) == [repo] and list(figures["runs"]) == [repo]
    median, runs = figures["median"][repo], figures["runs"][repo]
    expected = {"validate_wall_s", "demo_wall_s", "first_pass_run_wall_s", "cached_run_wall_s", "compare_wall_s"}
    expected |= {f"{b}_bs{bs}_{m}" for b in ("torch", "onnxrt") for bs in (1, 32)
                 for m in ("images_per_s", "latency_model_ms")}
    assert set(median) == expected and set(runs) == expected
    for key in expected:
        assert len(runs[key]) == 1 and positive(runs[key][0]), (key, runs[key])  # one value per repeat
        assert median[key] == round(runs[key][0], 3)
        assert re.search(rf"^{key}\s+\d+\.\d{{3}}$", stdout, re.MULTILINE), key
    assert stdout.splitlines()[0].split()[:3] == ["median", "of", "1"]
    assert not list((tmp_path / "tmp").glob("tmp*"))  # its temporary folder (under TMPDIR) is removed


# ---------------------------------------------------------------------------------------------- TensorRT


@pytest.fixture(scope="module")
def trt_prepared(tmp_path_factory, demo_data):
    """trt_builds.py --prepare: the ONNX files made on the CPU with ModelOpt and ONNX Runtime (~25 s)."""
    base = tmp_path_factory.mktemp("trt_builds")
    folder = base / "onnx"
    r = run_script("trt_builds.py", "--prepare", folder, "--dataset", demo_data, "--out", base / "out",
                   tmp_path=base)
    return base, folder, ok(r)


PREPARED = {  # file name: (precision in the file's metadata, the tool that made it)
    "fp32": (None, "torch.onnx"), "fp16": ("fp16", "modelopt.onnx.autocast"),
    "bf16": ("bf16", "modelopt.onnx.autocast"), "int8-modelopt": ("int8", "modelopt.onnx.quantization"),
    "int8-ort": ("int8", "onnxruntime.quantization.quantize_static"),
    "fp8-modelopt": ("fp8", "modelopt.onnx.quantization"),
}


@pytest.mark.slow
def test_trt_builds_prepare_makes_every_precision_on_cpu(trt_prepared):
    import onnx

    base, folder, stdout = trt_prepared
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"mobilenet_v3_small-{n}.onnx" for n in PREPARED)
    for name, (precision, tool) in PREPARED.items():
        m = re.search(rf"^{re.escape(name)}: ([\d.]+) MB, made by (\S+)$", stdout, re.MULTILINE)
        assert m and float(m.group(1)) > 0 and m.group(2) == tool, (name, stdout)
        model = onnx.load(str(folder / f"mobilenet_v3_small-{name}.onnx"), load_external_data=False)
        meta = {p.key: json.loads(p.value) for p in model.metadata_props if p.key.startswith("arttrt.")}
        assert meta["arttrt.network"] == "mobilenet_v3_small" and meta["arttrt.input_shape"] == [-1, 3, 224, 224]
        assert meta.get("arttrt.precision", "fp32") == (precision or "fp32")
        if precision == "int8" or precision == "fp8":
            assert any(n.op_type == "QuantizeLinear" for n in model.graph.node), name
    assert not (base / "out").exists()  # --prepare alone writes no table


@pytest.mark.slow
def test_trt_builds_build_quotes_each_refusal_without_tensorrt(trt_prepared):
    base, folder, _ = trt_prepared
    out = base / "build-out"
    stdout = ok(run_script("trt_builds.py", "--build", folder, "--out", out, tmp_path=base))
    table = (out / "trt_builds.md").read_text()
    assert table.strip() == stdout.strip()
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table.splitlines()[2:]]
    routes = ["build_trt dynamic 1-256", "build_trt again (cache)", "build_trt static 8",
              "main.py -v -trt (dynamic 1-8)"]
    assert [(r[0], r[1]) for r in rows] == [(n, route) for n in PREPARED for route in routes]
    for r in rows:  # no GPU, no TensorRT here: every route refuses, in one quoted sentence, and no figure is made
        assert r[2].startswith("refused: ") and "TensorRT" in r[2], r
        assert r[3:6] == ["", "", ""], r


# ---------------------------------------------------------------------------------------------- GPU only


@pytest.mark.slow
@pytest.mark.parametrize("script", ["feed.py", "harness_overhead.py", "gpu_checks.py"])
def test_gpu_only_script_refuses_in_one_line_without_a_gpu(script, tmp_path, demo_data):
    out = tmp_path / "out"
    args = ["--out", out] + (["--dataset", demo_data] if script == "gpu_checks.py" else [])
    if script == "feed.py":
        args += ["--images", 8, "--batch_sizes", 4, "--workdir", tmp_path / "work"]
    r = run_script(script, *args, tmp_path=tmp_path, timeout=120)
    said = (r.stdout + r.stderr).strip()
    assert r.returncode != 0
    assert "Traceback" not in said and len(said.splitlines()) == 1, said
    assert "CUDA GPU" in said
    assert not out.exists() and not (tmp_path / "work").exists()


@pytest.mark.slow
def test_helpers_refuse_bad_folders_in_one_line(tmp_path):
    r = run_script("records_table.py", tmp_path=tmp_path, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().startswith("usage: python benchmarks/records_table.py FOLDER")
    (tmp_path / "empty").mkdir()
    r = run_script("decode_profile.py", tmp_path / "empty", "--cpu_only", tmp_path=tmp_path, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == f"error: no JPEG files under {tmp_path / 'empty'}"
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------------------ serving_ablation.py (in process)

def _ablation():
    import importlib.util

    spec = importlib.util.spec_from_file_location("serving_ablation", ROOT / "benchmarks" / "serving_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SIZES = [1, 2, 4, 8, 16, 32, 64, 96, 128, 256]


@pytest.mark.parametrize("variant, take_31, take_100, switch", [
    ("as-built", 16, 96, 2e-4),        # prepared sizes only; the 0.2 ms interval
    ("switch-5ms", 16, 96, 5e-3),      # Python's default interval kept
    ("pad-up", 31, 100, 2e-4),         # every queued sample, padded up by the SUT's infer
    ("pad-below-32", 31, 96, 2e-4),    # padded below 32, prepared sizes above
])
def test_serving_ablation_changes_what_the_sut_reads_for_one_run_only(tmp_path, variant, take_31, take_100, switch):
    from utils.measure import serving, sut

    ab = _ablation()
    seen = {}

    def fake_main(argv):  # what BatchingSUT._take (utils.measure.sut) and Harness.run (serving) look up, by module name
        seen.update(argv=list(argv), take=(sut.batch_take(31, 256, SIZES), sut.batch_take(100, 256, SIZES)),
                    switch=serving.SWITCH_INTERVAL_S)
        return 3

    assert ab.run_variant(variant, ["-v", "--scenario", "server"], tmp_path / variant, fake_main) == 3
    assert seen == {"argv": ["-v", "--scenario", "server", "--output", str(tmp_path / variant)],
                    "take": (take_31, take_100), "switch": switch}
    assert sut.batch_take(31, 256, SIZES) == 16 and serving.SWITCH_INTERVAL_S == 2e-4  # restored

    def failing_main(argv):  # a real bug: cli_boundary lets it through with its traceback
        raise RuntimeError("planted")

    with pytest.raises(RuntimeError, match="planted"):
        ab.run_variant(variant, [], tmp_path, failing_main)
    assert sut.batch_take is ab.AS_BUILT_TAKE and serving.SWITCH_INTERVAL_S == 2e-4


@pytest.mark.parametrize("args, says", [
    (["--out", "o"], "give main.py's arguments after --"),
    (["--out", "o", "--", "-v", "--scenario", "server", "--output", "x"], "without --output"),
    (["--out", "afile", "--", "-v", "--scenario", "server", "--find_peak"], "is a file"),
    (["--out", "full", "--", "-v", "--scenario", "server", "--find_peak"], "is not empty"),
    (["--out", "o", "--", "-v", "--network", "resnet18", "--synthetic", "4"], "with --find_peak"),
    (["--out", "o", "--", "-v", "--scenario", "server", "--target_qps", "5"], "with --find_peak"),
    (["--out", "o", "--", "-v", "--backends", "torch", "compile", "--scenario", "server", "--find_peak"],
     "one backend"),
    (["--out", "o", "--", "-v", "--networks", "resnet18", "mobilenet_v2", "--scenario", "server", "--find_peak"],
     "one network"),
    (["--out", "o", "--", "-v", "--backend", "onnxrt", "--device", "cuda", "--scenario", "server", "--find_peak"],
     "process of its own"),
    (["--out", "o", "--", "-v", "--scenario", "server", "--find_peak", "--shard", "1/2"], "--shard"),
])
@pytest.mark.slow
def test_serving_ablation_refuses_bad_arguments_in_one_line(tmp_path, args, says):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("a user's file")
    (tmp_path / "afile").write_text("a user's file")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serving_ablation.py"), *args], cwd=tmp_path,
                       env=bench_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (tmp_path / "full" / "mine.txt").read_text() == "a user's file"
    assert (tmp_path / "afile").read_text() == "a user's file" and not (tmp_path / "o").exists()


def test_serving_ablation_measures_a_repeated_variant_again_and_stops_at_ctrl_c(tmp_path, monkeypatch):
    """A variant named twice gets its own folder (a second measurement, not the first found done); an interrupted
    variant (exit 130) ends the script with 130 and keeps the rows done so far."""
    ab = _ablation()
    assert ab.folders(["as-built", "pad-up", "as-built", "as-built"]) == [
        ("as-built", "as-built"), ("pad-up", "pad-up"), ("as-built", "as-built-2"), ("as-built", "as-built-3")]
    ran = []

    def fake_run(name, main_args, folder, main):
        ran.append(folder.name)
        return 130 if len(ran) == 2 else 0

    monkeypatch.setattr(ab, "check_job", lambda main_args: None)
    monkeypatch.setattr(ab, "run_variant", fake_run)
    rc = ab.main(["--variants", "as-built", "as-built", "pad-up", "--out", str(tmp_path / "o"), "--", "-v"])
    assert rc == 130 and ran == ["as-built", "as-built-2"]  # pad-up never started
    rows = json.loads((tmp_path / "o" / "serving_ablation.json").read_text())
    assert [(r["folder"], r["exit"]) for r in rows] == [("as-built", 0), ("as-built-2", 130)]
