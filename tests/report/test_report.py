"""Records -> tables and plots: a sweep's files, --report redrawing them from the records alone, the telemetry
plot and the "is TensorRT worth it?" table."""
from __future__ import annotations

import pytest
import json
from pathlib import Path

import numpy as np
from PIL import Image

import main
from utils.report.schema import typed, typed_all
from utils.report.sections.results_tables import side_by_side_markdown
from tests.conftest import squeeze


def test_side_by_side_table_from_records():
    def rec(backend, precision, bs, ips, p50, p99, prep, top1=None):
        return {"record_version": 2, "kind": "validate", "network": "resnet50", "backend": backend,
                "precision": precision, "batch_size": bs, "images_per_s": ips, "latency_model_p50": p50,
                "latency_model_p99": p99, "prepare_s": prep, "top1": top1, "mode": "pipelined",
                "time": f"t{bs}{backend}{precision}"}

    recs = [rec("torch", "fp32", 1, 255.3, 3.619, 4.447, 0.0), rec("torch", "fp32", 256, 8948.4, 27.5, 27.6, 0.0),
            rec("compile", "fp16", 1, 397.8, 2.079, 3.077, 11.4), rec("compile", "fp16", 256, 20181.0, 8.7, 8.8, 10.0)]
    recs[-1]["compile_mode"] = recs[-2]["compile_mode"] = "default"
    text = squeeze(side_by_side_markdown("resnet50", typed_all(recs)))
    assert "| Vanilla | 255.3 | 8948.4 | 3.619 / 4.447 | - | 0.0 |" in text
    assert "| torch.compile fp16 (default) | 397.8 | 20181.0 | 2.079 / 3.077 | - | 11.4 |" in text
    assert "Not measured in these records: torch fp16, onnxrt fp16, tensorrt fp16, tensorrt int8." in text


def _not_blank(path):
    arr = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return arr.std() > 5 and (arr < 128).mean() > 0.005


@pytest.mark.slow
def test_sweep_records_tables_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    assert main.main(["-v", "--network", "resnet18", "--synthetic", "8", "--batch_sizes", "1", "2", "4",
                      "--backends", "torch", "onnxrt", "--output", str(out), "--quiet"]) == 0
    recs = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert sorted((r["backend"], r["batch_size"], r["role"]) for r in recs) == \
        [(b, bs, role) for b in ("onnxrt", "torch") for bs, role in ((1, "timing"), (2, "timing"), (4, "accuracy"),
                                                                     (4, "timing"))]
    for r in recs:
        for k in ("latency_model_p50", "latency_model_p99", "latency_all_p90", "latency_model_cv_percent",
                  "images_per_s", "size_mib", "layers", "params", "prepare_s"):
            assert r[k] is not None, k
        assert r["env"]["torch"] and "cpu" in r["env"] and r["command"].startswith("python main.py -v")
    table = squeeze((out / "table_outputs" / "resnet18.md").read_text())
    assert table.count("## Batch size") == 3 and "| Vanilla |" in table and "| ONNX Runtime fp32 (cpu) |" in table
    assert "Latency-all mean / max (ms)" in table and "p50 / p90 / p99" in table
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.name for p in pngs} >= {"throughput-resnet18.png", "inference_time_bar_all-bs1.png"}
    assert all(_not_blank(p) for p in pngs)
    # --report redraws the same files from the records alone
    for p in pngs:
        p.unlink()
    assert main.main(["--report", str(out)]) == 0
    assert sorted((out / "plots").glob("*.png")) == pngs
    check_report_html(out / "report.html", [r for r in recs if r["role"] != "accuracy"])  # timing rows shown


def check_report_html(page: Path, recs, plots: bool = True) -> None:
    """report.html: one self-contained page (nothing fetched from anywhere), the tables as HTML tables with the
    records' own figures, every plot inline as a PNG that decodes."""
    import base64
    import html.parser
    import io

    from PIL import Image

    class Parse(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.srcs, self.cells, self.cell = [], [], [], None

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            a = dict(attrs)
            self.srcs += [a[k] for k in ("src", "href") if k in a]
            if tag in ("td", "th"):
                self.cell = ""

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.cells.append(self.cell.strip())
                self.cell = None

    p = Parse()
    p.feed(page.read_text())
    assert "script" not in p.tags and "link" not in p.tags and p.tags.count("table") >= 2 + 2 * (not plots)
    assert bool(p.srcs) == plots and all(src.startswith("data:image/png;base64,") for src in p.srcs)
    for src in p.srcs:
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.format == "PNG" and img.size[0] > 300
    if recs:  # both tables of each network: the side-by-side answer and the original's per-batch one
        text = page.read_text()
        assert all(f"{n}: is TensorRT worth it?" in text and f"<h1>{n}" in text for n in {r["network"] for r in recs})
    for r in recs:  # each record's images/s, as the tables print it, is a cell of the page (marked if unstable)
        ips = f"{r['images_per_s']:.1f}"
        assert ips in p.cells or f"{ips} (unstable)" in p.cells, r["images_per_s"]


def test_telemetry_plot_from_csv(tmp_path):
    from utils.report.plots import telemetry_plot

    samples = [{"t_s": i * 0.05, "label": "torch-fp16-bs256" if i > 20 else "torch-fp32-bs256",
                "phase": ["build", "load", "warm-up", "measure"][min(3, (i % 20) // 5)],
                "memory_used_mb": 1000 + 10 * i, "sm_util_percent": (i * 7) % 100, "sm_clock_mhz": 1980,
                "power_w": 400} for i in range(40)]
    path = telemetry_plot(samples, tmp_path / "t.png", "resnet50")
    assert _not_blank(path)


def _rec(backend, dataset, images, top1, weights="packaged:lite0.pth", bs=1, key=None, **kw):
    return typed({"record_version": 2, "kind": "validate", "network": "efficientnet_lite0", "backend": backend,
                  "precision": "fp32", "batch_size": bs, "images_per_s": 100.0, "top1": top1, "top5": 95.0,
                  "mode": "pipelined", "dataset": dataset, "dataset_key": key or dataset, "images": images,
                  "weights": weights, "weights_id": weights, "time": f"t{backend}{dataset}", "env": {"cpu": "x"},
                  **kw})


def test_tables_tell_datasets_and_weights_apart():
    """A 3-image ONNX Runtime row (100 %) beside a 20-image PyTorch row (85 %): every table says so."""
    from utils.report.sections.results_tables import results_table, summary_markdown

    recs = [_rec("torch", "/data/demo", 20, 85.0), _rec("onnxrt", "/data/three", 3, 100.0)]
    for text in (results_table(recs), summary_markdown("efficientnet_lite0", recs),
                 side_by_side_markdown("efficientnet_lite0", recs)):
        text = squeeze(text)
        assert "| dataset |" in text and "| weights |" not in text
        assert "| demo (20 img) |" in text and "| three (3 img) |" in text
    same = [_rec("torch", "/data/demo", 20, 85.0), _rec("onnxrt", "/data/demo", 20, 85.0)]
    assert "dataset" not in results_table(same) and "(20 img)" not in results_table(same)
    # the same folder with other content (another key) is another dataset
    changed = [_rec("torch", "/data/demo", 20, 85.0, key="k1"), _rec("onnxrt", "/data/demo", 20, 80.0, key="k2")]
    assert "dataset" in results_table(changed).splitlines()[0]
    # two weights: a column; random weights: their accuracy is marked
    two = [_rec("torch", "/data/demo", 20, 85.0), _rec("torch", "/data/demo", 20, 0.0, weights="random:seed0")]
    table = squeeze(results_table(two))
    assert "weights" in table.splitlines()[0] and "0.00 (random weights)" in table and "85.00 |" in table
    # and the newest record of one configuration never hides the other dataset's
    from utils.report.select import latest_per_config

    assert len(latest_per_config(recs)) == 2 and len(latest_per_config(two)) == 2


@pytest.mark.slow
def test_random_weights_on_a_labelled_dataset_warn_once_and_are_marked(demo_data, tmp_path, capsys):
    assert main.main(["-v", "--network", "mobilenet_v3_small", "--dataset", str(demo_data), "--batch_size", "10",
                      "--backends", "torch", "onnxrt", "--output", str(tmp_path), "--quiet"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "random weights" in line]
    assert len(warnings) == 1 and "measure nothing" in warnings[0] and warnings[0].startswith("WARNING")
    # top-1 and top-5 of both rows, and top-1 of both in the "is TensorRT worth it?" table
    assert captured.out.count("(random weights)") == 6
    # timing on random images: nothing to warn about
    assert main.main(["-v", "--network", "mobilenet_v3_small", "--synthetic", "4", "--batch_size", "4",
                      "--output", str(tmp_path / "t"), "--quiet"]) == 0
    assert "random weights" not in capsys.readouterr().err


def test_a_record_is_never_lost_to_a_folder_that_stopped_taking_files(tmp_path, monkeypatch, caplog):
    """The output was checked at the start; if it fails later anyway, the measurement goes to the temporary folder."""
    import logging

    from utils.report.records import Recorder, make_record

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    blocked = tmp_path / "out"
    blocked.mkdir()
    (blocked / "records").write_text("a file where the records folder should be")
    with caplog.at_level(logging.WARNING):
        rec = Recorder(blocked, "python main.py -v").write(make_record("validate", network="n", images_per_s=1.0))
    saved = json.loads(open(str(rec.path)).read())
    assert saved["images_per_s"] == 1.0 and str(rec.path).startswith(str(tmp_path / "tmp" / "arttrt-records"))
    assert "could not write the record" in caplog.text and str(rec.path) in caplog.text


def _cmp(backend, precision, inputs, mae, time):
    return {"record_version": 2, "kind": "compare", "network": "net", "weights": "w", "reference": "torch-fp32",
            "backend": backend,
            "precision": precision, "inputs_source": "random (seed 0)", "dataset": None, "inputs": inputs,
            "batch_size": 1, "time": time, "rank_mae": [mae], "rank_logit_mae": [10 * mae],
            "rank_class_diff_percent": [0.0], "isclose_percent": 99.0, "top1_agreement_percent": 100.0,
            "top5_overlap_percent": 100.0, "max_abs_error": mae, "flips": 0}


def test_the_report_draws_comparisons_from_the_latest_records_only():
    from utils.report.sections.compare_tables import compare_groups
    from utils.report.select import latest_compares

    recs = [_cmp("onnxrt", "fp16", 16, 0.5, "t1"), _cmp("onnxrt", "fp32", 16, 0.1, "t1"),
            _cmp("onnxrt", "fp16", 16, 0.25, "t2"),   # the same setup again: replaces the first
            _cmp("onnxrt", "int8", 8, 0.9, "t3")]     # other inputs: a table of its own, alone
    latest = latest_compares(typed_all(recs))
    assert sorted((r.precision, r.time) for r in latest) == [("fp16", "t2"), ("fp32", "t1"), ("int8", "t3")]
    tables = compare_groups(latest)
    assert len(tables) == 1 and tables[0].startswith("## net: comparisons against Vanilla (16 inputs)")
    rows = squeeze(tables[0])
    assert "| rank | ONNX Runtime fp32 | ONNX Runtime fp16 |" in rows and "| 1 | 1.000e+00 | 2.500e+00 |" in rows


def test_plot_series_tell_modes_datasets_and_weights_apart():
    from utils.report.plots import series_labels

    a = typed({"record_version": 2, "kind": "validate", "batch_size": 1, "network": "n", "backend": "torch",
               "precision": "fp32", "mode": "sync", "dataset": "/d/demo", "images": 20})
    b = a.with_fields(mode="pipelined")
    label = series_labels([a, b])
    assert label(a) != label(b) and label(a).endswith("[sync]")
    c = b.with_fields(dataset="/d/three", images=3, dataset_key="k3")
    label = series_labels([b, c])
    assert label(b).endswith("[demo (20 img)]") and label(c).endswith("[three (3 img)]")
    assert series_labels([a])(a) == "Vanilla"  # nothing to tell apart: the row label alone


def test_the_report_header_counts_every_record_read_and_says_why_any_is_left_out(tmp_path):
    """Issue 27: five comparison records but four shown, without a word. Now the header names every record read and
    why each left out is not a row: replaced by a newer one of the same setup, failed, skipped. A comparison at
    another tolerance asks another question: it is shown, not replaced."""
    from utils.report.report import make_report

    old, new = _rec("torch", "d", 20, 80.0), _rec("torch", "d", 20, 81.0, time="tz")  # same setup, later
    acc = _rec("onnxrt", "d", 20, 80.0, role="accuracy", time="ta")  # folded into the timed row below
    timed = _rec("onnxrt", "d", 20, 80.0, role="timing", time="tb")
    failed = _rec("compile", "d", 20, 0.0, error="RuntimeError: out of memory", job_key="j1")
    skipped = _rec("tensorrt", "d", 20, 0.0, error="skipped: TensorRT is not installed", job_key="j2")
    cmps = [_cmp("onnxrt", "fp16", 16, 0.5, "t1"), _cmp("onnxrt", "fp16", 16, 0.25, "t2"),
            dict(_cmp("onnxrt", "fp16", 16, 0.25, "t3"), rtol=1e-2)]
    make_report(tmp_path, records=[old, new, acc, timed, failed, skipped, *cmps])
    page = " ".join((tmp_path / "report.html").read_text().split())
    assert (f"Records under {tmp_path.resolve()}: 6 validation (2 shown; left out: 2 replaced by a newer record of "
            "the same setup (or an accuracy pass folded into its timed row), 1 failed, 1 skipped) and 3 comparison "
            "(2 shown; left out: 1 replaced by a newer record of the same setup) records; a failed or skipped job "
            "that no later record measured is listed under Not measured. Drawn ") in page
    assert "RuntimeError: out of memory" in page and "TensorRT is not installed" in page  # listed, as it says


def test_the_legends_cover_no_bar_and_no_line(tmp_path, monkeypatch):
    """Issue 27: the latency bars' legend sat over the bars. Each plot's legend is drawn outside its axes: its box
    overlaps no bar and no point of a line, and the saved image holds it."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from utils.report import plots

    recs = [_rec(b, "d", 20, 80.0, bs=bs, precision=p, images_per_s=ips, latency_model_mean=lat,
                 latency_all_mean=lat * 1.2)
            for b, p, ips, lat in (("torch", "fp32", 90.0, 9.0), ("torch", "fp16", 95.0, 9.5),
                                   ("onnxrt", "fp32", 100.0, 10.0), ("onnxrt", "int8", 99.0, 9.9))
            for bs in (1, 8)]
    checked = []

    def check(fig, path):
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend()
        assert legend is not None and len(legend.get_texts()) == 4, path
        box = legend.get_window_extent()
        assert box.x0 >= ax.get_window_extent().x1, f"{path}: the legend is inside the axes"
        for artist in ax.get_children():
            if isinstance(artist, Rectangle) and artist is not ax.patch and artist.get_height():
                assert not box.overlaps(artist.get_window_extent()), f"{path}: the legend covers a bar"
            if isinstance(artist, Line2D):
                for x, y in ax.transData.transform(artist.get_xydata()):
                    assert not box.contains(x, y), f"{path}: the legend covers a point"
        checked.append(path.name)
        fig.savefig(path, bbox_inches="tight")
        assert Image.open(path).size[0] * 72 / fig.dpi > fig.get_size_inches()[0] * 72, "the legend was cut off"
        return path

    monkeypatch.setattr(plots, "_save", check)
    plots.latency_bars(recs, tmp_path / "bars.png", 8)
    plots.throughput_plot(recs, "efficientnet_lite0", tmp_path / "tp.png")
    assert checked == ["bars.png", "tp.png"]


def test_one_batch_size_draws_labelled_bars_and_precisions_differ_by_more_than_shade(tmp_path):
    from matplotlib.patches import Rectangle

    from utils.report import plots

    recs = [_rec(b, "d", 20, 80.0, bs=10, precision=p, images_per_s=ips)
            for b, p, ips in (("torch", "fp32", 90.0), ("onnxrt", "fp32", 120.0), ("onnxrt", "int8", 150.5))]
    fig, ax = plots.throughput_figure(recs, "efficientnet_lite0")
    bars = [a for a in ax.patches if isinstance(a, Rectangle)]
    assert sorted(round(b.get_width(), 1) for b in bars) == [90.0, 120.0, 150.5]  # a bar each, not a lone dot
    assert {t.get_text().strip() for t in ax.texts} == {"90.0", "120.0", "150.5"}
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Vanilla", "ONNX Runtime fp32", "ONNX Runtime int8"]
    assert {b.get_hatch() or "" for b in bars} == {"", "xx"}  # int8 hatched, fp32 plain
    assert "at batch size 10" in ax.get_title()
    path = plots.throughput_plot(recs, "efficientnet_lite0", tmp_path / "one.png")
    assert Image.open(path).size[1] > 100
    several = [r.with_fields(batch_size=bs) for r in recs for bs in (1, 8)]
    fig, ax = plots.throughput_figure(several, "efficientnet_lite0")
    assert {line.get_label(): line.get_marker() for line in ax.get_lines()} == {
        "Vanilla": "o", "ONNX Runtime fp32": "o", "ONNX Runtime int8": "^"}
