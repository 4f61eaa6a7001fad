"""The energy table (utils/report/tables.energy_markdown) and the worth-it table's energy column, cell by cell and
sentence by sentence: which rows it holds (GPU rows only, in the study's order), the network column where there
are several networks, each figure's format, and the reason where a row has no figure. Light: no torch model."""
from __future__ import annotations

from tests.report.test_tables import cells
from utils.measure.energy import energy_fields
from utils.report.schema import typed
from utils.report.sections.energy_tables import ENERGY_NOTE, energy_markdown
from utils.report.sections.worth_it_tables import worth_it_markdown

HEAD = ["runner", "batch", "mode", "images/s", "mean power (W)", "J / image", "images/s per W", "window (s)",
        "no figure because"]
SHORT = "the timed window (0.5 s) is shorter than 1 s, the least the counter's steps allow"


def gpu(network="resnet50", backend="torch", precision="fp32", bs=256, ips=9000.0, **energy):
    return typed({"kind": "validate", "record_version": 2, "network": network, "backend": backend, "precision": precision,
            "options": "", "batch_size": bs, "mode": "pipelined", "images_per_s": ips, "device": "cuda",
            "time": "2026-12-03T08:00:00+00:00", **energy})


def test_one_network_the_heading_the_note_and_every_cell():
    rows = [gpu(backend="tensorrt", precision="fp16", bs=8, ips=6666.66, **energy_fields(123_456, 1.5, 1000, 6666.66)),
            gpu(bs=256, **energy_fields(1_200_000, 2.0, 18000, 9000.0)),
            gpu(bs=1, ips=800.0, **energy_fields(1_000, 0.5, 400, 800.0)),
            gpu(backend="onnxrt", ips=50.0, device="cpu")]  # no energy_scope: not in the table
    text = str(energy_markdown(rows))
    assert text.splitlines()[0] == "## Energy per image"
    assert ENERGY_NOTE in text and ENERGY_NOTE.startswith("Energy from NVML's counter over each row's timed window")
    assert cells(text) == [
        HEAD,
        ["Vanilla", "1", "pipelined", "800.0", "-", "-", "-", "0.50", SHORT],
        # 1200 J over 2 s: 600 W; 1200 J / 18000 images: 0.06667 J; 9000 images/s / 600 W: 15
        ["Vanilla", "256", "pipelined", "9000.0", "600.0", "0.06667", "15.00", "2.00", ""],
        # 123.456 J over 1.5 s: 82.3 W; 0.123456 J per image (4 significant digits); 6666.66 / 82.3 = 81.00
        ["TRT fp16", "8", "pipelined", "6666.7", "82.3", "0.1235", "81.00", "1.50", ""]]


def test_several_networks_gain_a_network_column_in_the_studys_order():
    rows = [gpu(network="resnet50", bs=256, **energy_fields(1_200_000, 2.0, 18000, 9000.0)),
            gpu(network="alexnet", backend="compile", bs=64, ips=3000.0, **energy_fields(300_000, 1.0, 3000, 3000.0)),
            gpu(network="alexnet", bs=64, ips=2000.0, **energy_fields(400_000, 2.0, 4000, 2000.0))]
    assert cells(str(energy_markdown(rows))) == [
        ["network"] + HEAD,
        ["alexnet", "Vanilla", "64", "pipelined", "2000.0", "200.0", "0.1", "10.00", "2.00", ""],
        ["alexnet", "torch.compile fp32", "64", "pipelined", "3000.0", "300.0", "0.1", "10.00", "1.00", ""],
        ["resnet50", "Vanilla", "256", "pipelined", "9000.0", "600.0", "0.06667", "15.00", "2.00", ""]]


def test_no_gpu_row_no_table():
    assert str(energy_markdown([gpu(device="cpu"), gpu(backend="onnxrt")])) == ""
    assert str(energy_markdown([])) == ""


def test_the_worth_it_energy_column_at_the_largest_batch():
    recs = [gpu(bs=1, ips=100.0, top1=70.0, latency_model_p50=1.0, **energy_fields(50_000, 5.0, 500, 100.0)),
            gpu(bs=256, top1=70.0, latency_model_p50=20.0, **energy_fields(1_200_000, 2.0, 18000, 9000.0)),
            gpu(backend="tensorrt", precision="int8", bs=256, ips=30000.0, top1=69.0, latency_model_p50=5.0,
                **energy_fields(1_000, 0.5, 100, 30000.0))]  # a short window: no figure
    rows = cells(str(worth_it_markdown(recs)))
    assert rows[0][-1] == "J / image @ largest batch" and rows[0][-2] == "same top-1 as Vanilla (%)"
    # the largest batch's figure (0.06667 J), not batch 1's (0.1 J); "-" where the window gave none
    assert [r[1] for r in rows[1:]] == ["Vanilla", "TRT int8"]
    assert [r[-1] for r in rows[1:]] == ["0.06667", "-"]
    # with the gate, the energy column stays last, after the gate's mark
    gated = cells(str(worth_it_markdown(recs, max_drop=0.5)))
    assert gated[0][-2:] == ["drop <= 0.5", "J / image @ largest batch"]
    assert [r[-2:] for r in gated[1:]] == [["ok", "0.06667"], ["OVER", "-"]]
    # no row with a figure: no column
    plain = cells(str(worth_it_markdown([r.with_fields(joules_per_image=None) for r in recs])))
    assert plain[0][-1] == "same top-1 as Vanilla (%)" and all(len(r) == len(plain[0]) for r in plain)


def test_a_tiny_figure_keeps_four_significant_digits_in_lower_case():
    row = gpu(energy_scope="whole GPU", energy_window_s=10.0, power_mean_w=700.0, joules_per_image=1.234e-05,
              images_per_s_per_watt=81037.3)
    assert cells(str(energy_markdown([row])))[1] == ["Vanilla", "256", "pipelined", "9000.0", "700.0", "1.234e-05",
                                                     "81037.30", "10.00", ""]
    assert cells(str(worth_it_markdown([row])))[1][-1] == "1.234e-05"  # the worth-it column: the same format


def test_a_row_with_energy_but_no_top1_is_marked_so_under_the_gate():
    recs = [gpu(bs=256, top1=70.0, latency_model_p50=20.0, **energy_fields(1_200_000, 2.0, 18000, 9000.0)),
            gpu(backend="tensorrt", precision="int8", bs=256, ips=30000.0, latency_model_p50=5.0,
                **energy_fields(600_000, 2.0, 60000, 30000.0))]  # timed without labels: no top-1
    rows = cells(str(worth_it_markdown(recs, max_drop=1.0)))
    assert rows[0][-3:] == ["same top-1 as Vanilla (%)", "drop <= 1", "J / image @ largest batch"]
    assert rows[1][1:] == ["Vanilla", "9000.0", "1.00x", "20.000", "1.00x", "70.00", "+0.00", "-", "ok", "0.06667"]
    assert rows[2][1:] == ["TRT int8", "30000.0", "3.33x", "5.000", "4.00x", "-", "-", "-", "no top-1", "0.01"]
