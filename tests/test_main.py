"""main.py end to end on the packaged photos and weights: the demo, validation, comparison, and one-line errors."""
from __future__ import annotations

import csv
import json
import os

import pytest
import torch

import main
from tests.conftest import squeeze
from utils.core.errors import cli_boundary


@pytest.mark.parametrize("argv, message", [
    (["--compare", "-rtol=-1"], "must not be negative"),
    (["--compare", "--val_dataset"], "pass --dataset"),
    (["--compare", "--reference", "torch"], "BACKEND-PRECISION"),
])
def test_bad_compare_arguments(argv, message, tmp_path, capsys):
    assert cli_boundary(main.main, argv + ["--output", str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def _records(folder):
    return [json.loads(p.read_text()) for p in (folder / "records").glob("compare-*.json")]


@pytest.mark.slow
def test_torch_vs_onnxruntime_fp32_and_int8_on_the_packaged_photos(demo_data, tmp_path, capsys):
    base = ["--compare", "--network", "efficientnet_lite0", "--pretrained", "--val_dataset", "--dataset",
            str(demo_data), "--batch_size", "4", "--backend", "onnxrt", "--quiet"]
    assert main.main(base + ["--precision", "fp32", "--output", str(tmp_path / "fp32")]) == 0
    fp32 = _records(tmp_path / "fp32")[0]
    assert fp32["inputs"] == 20 and fp32["top1_agreement_percent"] == 100.0 and fp32["flips"] == 0
    assert fp32["max_abs_error"] < 1e-3 and fp32["isclose_percent"] > 99.0
    assert main.main(base + ["--precision", "int8", "--calib_size", "20", "--output", str(tmp_path / "int8"),
                             "-rtol=1e-2"]) == 0
    int8 = _records(tmp_path / "int8")[0]
    assert int8["max_abs_error"] > fp32["max_abs_error"] * 100  # quantization is visible in the logits
    assert int8["top5_overlap_percent"] < 100.0 and int8["top1_agreement_percent"] >= 90.0
    # a flip is right->wrong, wrong->right, or one wrong class for another
    assert int8["ref_top1"] == 85.0 and int8["flips"] >= int8["right_to_wrong"] + int8["wrong_to_right"]
    out = squeeze(capsys.readouterr().out)
    assert "## Comparisons: efficientnet_lite0: ONNX Runtime int8 (cpu) against Vanilla (20 inputs)" in out
    assert "| rank | score MAE" in out
    md = list((tmp_path / "int8" / "compare").glob("*.md"))
    assert md and "Top-10 of the first input" in md[0].read_text()
    print(f"fp32: max abs {fp32['max_abs_error']:.2e}, isclose {fp32['isclose_percent']:.2f}%; "
          f"int8: top-1 agreement {int8['top1_agreement_percent']:.1f}%, top-5 overlap "
          f"{int8['top5_overlap_percent']:.1f}%, max abs {int8['max_abs_error']:.3f}, rel L2 {int8['rel_l2_error']:.3f}")


@pytest.mark.slow
def test_compare_precisions_as_columns_like_the_original(demo_data, tmp_path, capsys):
    """--compare --precisions fp32 fp16 int8: one table per measure with the runners as columns, ranks 1-10 as
    rows, score MAE on logits and on probabilities, class differences; figures those of each runner's record."""
    out = tmp_path / "o"
    assert main.main(["--compare", "--network", "efficientnet_lite0", "--pretrained", "--val_dataset", "--dataset",
                      str(demo_data), "--batch_size", "4", "--backend", "onnxrt", "--precisions", "fp32", "fp16",
                      "int8", "--calib_size", "20", "--output", str(out), "--quiet"]) == 0
    recs = {r["precision"]: r for r in _records(out) if r["backend"] == "onnxrt"}
    assert sorted(recs) == ["fp16", "fp32", "int8"]
    text = squeeze((out / "compare" / "efficientnet_lite0-columns.md").read_text())
    assert text in squeeze(capsys.readouterr().out)
    assert "## efficientnet_lite0: comparisons against Vanilla (20 inputs)" in text
    names = ["ONNX Runtime fp32 (cpu)", "ONNX Runtime fp16 (cpu)", "ONNX Runtime int8 (cpu)"]
    for heading, key in (("Score MAE at each rank, logits:", "rank_logit_mae"),
                         ("Score MAE at each rank, probabilities:", "rank_mae"),
                         ("Class differs at each rank (%):", "rank_class_diff_percent")):
        table = text.split(heading + "\n\n")[1].split("\n\n")[0]
        rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table.strip().splitlines()]
        assert rows[0] == ["rank", *names] and [r[0] for r in rows[2:]] == [str(i) for i in range(1, 11)]
        for col, name in enumerate(names, start=1):
            rec = recs[name.split(" ")[2]]
            assert [float(r[col]) for r in rows[2:]] == pytest.approx(rec[key][:10], rel=1e-3, abs=1e-2 * (
                key == "rank_class_diff_percent")), (key, name)
    logits = {p: recs[p]["rank_logit_mae"][0] for p in recs}
    assert logits["fp32"] < 1e-4 < logits["fp16"] < logits["int8"]  # each precision's own drift, in logits
    assert recs["int8"]["rank_logit_mae"][0] != pytest.approx(recs["int8"]["rank_mae"][0])
    from tests.report.test_report import check_report_html

    page = (out / "report.html").read_text()
    assert "efficientnet_lite0: comparisons against Vanilla (20 inputs)" in page
    assert page.count("ONNX Runtime int8 (cpu)") >= 2
    check_report_html(out / "report.html", [], plots=False)


@pytest.mark.slow
def test_random_inputs_and_flips_csv(demo_data, tmp_path):
    argv = ["--compare", "--network", "efficientnet_lite0", "--pretrained", "--backend", "onnxrt", "--precision",
            "int8", "--dataset", str(demo_data), "--calib_size", "20", "--num_inputs", "64", "--batch_size", "16",
            "--seed", "3", "--output", str(tmp_path), "--quiet"]
    assert main.main(argv) == 0
    rec = _records(tmp_path)[0]
    assert rec["inputs"] == 64 and rec["inputs_source"] == "random (seed 3)" and rec["labelled"] == 0
    flips = list((tmp_path / "compare").glob("*-flips.csv"))
    assert len(flips) == (1 if rec["flips"] else 0)  # a flips file exactly when something flipped
    rows = list(csv.DictReader(flips[0].open())) if flips else []
    assert len(rows) == rec["flips"] and all(r["file"].startswith("random/") for r in rows)
    assert rec["flips"] == round(rec["inputs"] * (1 - rec["top1_agreement_percent"] / 100))
    print(f"random inputs int8: top-1 agreement {rec['top1_agreement_percent']:.1f}%, flips {rec['flips']}")


def test_demo_figures(tmp_path, capsys):
    """The README's first command: 17 of 20 top-1, 19 of 20 top-5, same top-1 on every photo."""
    assert main.main(["--demo", "--quiet", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "top-1 17 of 20 / 17 of 20, top-5 19 of 20 / 19 of 20" in out
    assert "same top-1 class on 20 of 20 photos" in out
    recs = [json.loads(p.read_text()) for p in (tmp_path / "demo" / "records").glob("*.json")]
    assert {r["backend"] for r in recs} == {"torch", "onnxrt"}
    for r in recs:
        assert r["top1"] == 85.0 and r["top5"] == 95.0 and r["images"] == 20
        assert r["latency_all_batches"] == 18 and r["warmup_batches"] == 2  # 10 % warm-up
        assert 0 < r["latency_model_mean"] <= r["latency_all_mean"]
        assert r["latency_model_max"] >= r["latency_model_mean"]
        assert r["params"] > 4_000_000 and r["size_mib"] > 14 and r["layers"] > 50
        assert r["env"]["torch"] == torch.__version__ and "main.py" in r["command"]
        assert r["agree_top1_percent"] == 100.0 and r["agree_top1_images"] == 20  # against PyTorch's (itself: 100)
        assert r["host_cores"] == os.cpu_count() and r["host_load_1m"] >= 0  # what marks a loaded host's rows
    page = (tmp_path / "demo" / "report.html").read_text()  # the report's agreement column is filled, as printed
    worth = page[page.index("Is TensorRT worth it?"):page.index("images/s against batch size")]
    assert worth.count("<td>100.00</td>") == 2, worth


@pytest.mark.slow
def test_validate_cli_with_torch_and_onnxrt(demo_data, tmp_path, capsys):
    rc = main.main(["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data),
                    "--batch_size", "4", "--backends", "torch", "onnxrt", "--output", str(tmp_path), "--quiet"])
    assert rc == 0
    out = squeeze(capsys.readouterr().out)
    assert "| efficientnet_lite0 | Vanilla | 4 |" in out and "ONNX Runtime fp32 (cpu)" in out
    assert "p50 / p90 / p99" in out


@pytest.mark.parametrize("argv, message", [
    (["-v", "--network", "resnet18", "--dataset", "/no/such/folder"], "does not exist"),
    (["-v", "--network", "resnet18"], "pass --dataset"),
    (["-v", "--network", "resnet18", "--synthetic", "4", "--precision", "fp16"], "CUDA"),
    (["-v", "--network", "resnet18", "--synthetic", "4", "-trt"], "TensorRT is not installed: pip install tensorrt-cu13"),
    (["-v", "--network", "resnet18", "--synthetic", "4", "--device", "cuda"], "no CUDA GPU"),
    # counts, fractions and devices, checked at the door
    (["-v", "--synthetic", "4", "--batch_size", "0"], "--batch_size must be at least 1, not 0"),
    (["-v", "--synthetic", "4", "--batch_sizes", "4", "-2"], "--batch_size must be at least 1, not -2"),
    (["--compare", "--batch_size", "0"], "--batch_size must be at least 1, not 0"),
    (["--compare", "--batch_size", "-1"], "--batch_size must be at least 1, not -1"),
    (["--compare", "--num_inputs", "0"], "--num_inputs must be at least 1, not 0"),
    (["-v", "--synthetic", "4", "--limit", "0"], "--limit must be at least 1, not 0"),
    (["-v", "--synthetic", "4", "--limit", "-3"], "--limit must be at least 1, not -3"),
    (["-v", "--synthetic", "-5"], "--synthetic must be at least 1, not -5"),
    (["-v", "--synthetic", "4", "--warmup", "2"], "--warmup is the fraction of batches used as warm-up, in [0, 1)"),
    (["-v", "--synthetic", "4", "--device", "tpu"], "--device 'tpu'"),
    (["-v", "--synthetic", "4", "--precision", "int8", "--calib_size", "0"], "--calib_size must be at least 1"),
    # choices that conflict or that nothing uses
    (["-v", "--synthetic", "4", "--backend", "torch", "--backends", "onnxrt"], "--backend and --backends both given"),
    (["-v", "--synthetic", "4", "--precision", "fp16", "--precisions", "fp32"], "ask for the precision once"),
    (["-v", "--synthetic", "4", "--dataset", "x"], "--synthetic and --dataset both given"),
    (["-v", "--synthetic", "4", "--provider", "cuda"], "--provider is an option of the onnxrt backend"),
    (["-v", "--synthetic", "4", "--trt_shapes", "static"], "--trt_shapes is an option of the tensorrt backend"),
    (["-v", "--synthetic", "4", "--compile_mode", "max-autotune"], "--compile_mode is an option of the compile"),
    (["-v", "--synthetic", "4", "--onnx", "x.onnx"], "--onnx is for the backends that run an ONNX file"),
    (["-v", "--synthetic", "4", "--backend", "torch", "--precision", "int8"], "the torch backend has no int8"),
])
def test_bad_input_is_one_sentence(argv, message, tmp_path, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc = cli_boundary(main.main, argv + ["--output", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "out" / "records").exists()  # refused before any work


def test_empty_weights_and_onnx_files_are_one_sentence(tmp_path, capsys):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert cli_boundary(main.main, ["-v", "--network", "resnet18", "--weights", str(empty), "--synthetic", "2",
                                    "--output", str(tmp_path), "--quiet"]) == 2
    assert "cannot read weights file" in capsys.readouterr().err
    onnx = tmp_path / "empty.onnx"
    onnx.write_bytes(b"")
    assert cli_boundary(main.main, ["-v", "--network", "resnet18", "--backend", "onnxrt", "--onnx", str(onnx),
                                    "--synthetic", "2", "--output", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty.onnx" in err[0]


def test_class_count_mismatch(demo_data, tmp_path, capsys):
    import torchvision

    w = tmp_path / "ten.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), w)
    rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--weights", str(w), "--dataset", str(demo_data),
                                  "--output", str(tmp_path), "--quiet"])
    assert rc == 2 and "10 outputs" in capsys.readouterr().err


@pytest.mark.slow
def test_onnx_input_size_mismatch(demo_data, lite0, tmp_path, capsys):
    from utils.models.onnx_export import export_onnx

    onnx_file = tmp_path / "small.onnx"
    from utils.models.networks import load_network

    export_onnx(load_network("resnet18"), onnx_file, (-1, 3, 160, 160))
    rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--backend", "onnxrt", "--onnx", str(onnx_file),
                                  "--dataset", str(demo_data), "--output", str(tmp_path), "--quiet"])
    assert rc == 2 and "takes input [-1, 3, 160, 160]" in capsys.readouterr().err


@pytest.mark.slow
def test_synthetic_timing_run_has_no_accuracy(tmp_path, capsys):
    rc = main.main(["-v", "--network", "resnet18", "--synthetic", "6", "--batch_sizes", "1", "3",
                    "--output", str(tmp_path), "--quiet"])
    assert rc == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    # a sweep: one whole pass at the largest batch, then bounded timing at each batch size
    assert sorted((r["role"], r["batch_size"]) for r in recs) == [("accuracy", 3), ("timing", 1), ("timing", 3)]
    assert all(r["top1"] is None and r["images"] == 6 and r["images_per_s"] > 0 for r in recs)


@pytest.mark.slow
def test_compare_takes_the_options_of_its_default_backend(tmp_path, capsys):
    """--compare's default runner is ONNX Runtime, so its options (--provider) are accepted without --backend."""
    assert main.main(["--compare", "--network", "mobilenet_v3_small", "--provider", "cpu", "--num_inputs", "2",
                      "--output", str(tmp_path), "--quiet"]) == 0
    assert "ONNX Runtime fp32 (cpu) against Vanilla (2 inputs)" in capsys.readouterr().out


@pytest.mark.slow
def test_class_map_cache_dir_sync_and_limit_through_the_command_line(tmp_path, capsys):
    """A two-class dataset named by a class map, decoded into --cache_dir, three images, timed batch by batch."""
    from tests.conftest import write_jpeg

    data = tmp_path / "pets"
    for i in range(3):
        write_jpeg(data / "dogs" / f"d{i}.jpg", seed=i, size=(40, 40))
        write_jpeg(data / "cats" / f"c{i}.jpg", seed=10 + i, size=(40, 40))
    cmap = tmp_path / "classes.txt"
    cmap.write_text("dogs\ncats\n")
    out, cache = tmp_path / "o", tmp_path / "c"
    assert main.main(["-v", "--network", "resnet18", "--num_classes", "2", "--dataset", str(data), "--class_map",
                      str(cmap), "--cache_dir", str(cache), "--batch_size", "2", "--sync", "--limit", "3",
                      "--output", str(out), "--quiet"]) == 0
    (r,) = [json.loads(p.read_text()) for p in (out / "records").glob("validate-*.json")]
    assert r["images"] == 3 and r["labelled_images"] == 3 and r["mode"] == "sync" and r["timed_images"] == 2
    assert r["short_batch"]["images"] == 1 and r["latency_all_batches"] == 1 and r["batch_size"] == 2
    assert len(list(cache.glob("pets-224-*.u8"))) == 1  # decoded where it was told
    assert "study: 1 job (1 measured, 0 found done before, 0 skipped, 0 failed)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["-trt"], "TensorRT is not installed: pip install tensorrt-cu13"),
    (["--backends", "torch", "tensorrt"], "TensorRT is not installed"),
    (["--gpus", "0"], "this run is on cuda because --gpus was given, but PyTorch sees no CUDA GPU here: drop --gpus"),
    (["--backends", "torch", "gpuonly"], "this run is on cuda because the gpuonly backend runs on a GPU only, but "
                                         "PyTorch sees no CUDA GPU here: drop gpuonly from the backends"),
    (["--device", "cuda"], "--device cuda asked, but PyTorch sees no CUDA GPU here"),
])
def test_a_missing_gpu_or_tensorrt_is_refused_before_any_network_loads(argv, message, monkeypatch, tmp_path, capsys):
    """What implied the GPU is named; no network, data or weights are touched before the refusal."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from utils.backends import registry
    from utils.models import networks

    monkeypatch.setitem(registry.BACKENDS, "gpuonly", registry.Backend(
        "gpuonly", "gpu only", ("fp32",), (), True, "tests.backends.example_backend"))

    def no_load(*a, **k):
        raise AssertionError("a network was loaded before the refusal")

    monkeypatch.setattr(networks, "load_network", no_load)
    rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--synthetic", "4", *argv,
                                  "--output", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()
