"""Issue 41, part 5: records.csv beside the records, one flat row per record, every field, in step with the schema;
a cell a spreadsheet would run as a formula is quoted."""
from __future__ import annotations

import csv
import io
import json

from tests.report.test_hostile_records import record, write
from utils.report.records import load_records
from utils.report.records_csv import csv_columns, records_csv
from utils.report.report import make_report
from utils.report.schema import Record


def test_every_schema_field_is_a_column_in_the_schemas_order():
    cols = csv_columns()
    assert cols[:5] == ["record_version", "kind", "time", "command", "error"]
    plain = {(f.alias or n) for n, f in Record.model_fields.items() if n not in ("env", "serve_settings")}
    assert plain <= set(cols) and len(cols) == len(set(cols))
    assert {"env.cpu", "env.torch", "env.driver", "env.loadgen", "serve_settings.max_batch"} <= set(cols)


def test_records_csv_is_written_beside_the_records_and_reads_back(tmp_path):
    out = tmp_path / "results"
    write(out, "a.json", record(custom_field="kept", env={"cpu": "EPYC", "torch": "2.14", "extra_env": "x"}))
    write(out, "b.json", record(backend="onnxrt", network="=HYPERLINK(\"http://evil\")", top1=None,
                                latency_ms={"p99": 1.5}, classes_losing=[{"class": 7, "lost": 2}]))
    make_report(out)
    rows = list(csv.DictReader(io.StringIO((out / "records.csv").read_text())))
    assert len(rows) == 2
    a, b = sorted(rows, key=lambda r: r["backend"] != "torch")
    assert (a["network"], a["backend"], a["top1"], a["batch_size"]) == ("resnet18", "torch", "70.0", "1")
    assert a["env.cpu"] == "EPYC" and a["env.extra_env"] == "x" and a["custom_field"] == "kept"
    assert b["network"].startswith("'=HYPERLINK")  # never a live formula
    assert b["top1"] == "" and json.loads(b["latency_ms"]) == {"p99": 1.5}
    assert json.loads(b["classes_losing"]) == [{"class": 7, "lost": 2}]
    header = (out / "records.csv").read_text().splitlines()[0].split(",")
    assert header[:len(csv_columns())] == csv_columns()  # the schema's columns first, then the others


def test_every_field_of_every_record_is_in_its_row(tmp_path):
    out = tmp_path / "r"
    write(out, "a.json", record(peak_steps=[{"target_qps": 10.0, "loadgen_valid": True}], role="scenario",
                                scenario="server", serve_settings={"scenario": "server", "max_batch": 8}))
    (rec,) = load_records(out)
    row = next(csv.DictReader(io.StringIO(records_csv([rec]))))
    for key, value in rec.as_dict().items():
        if key == "_path":
            continue
        if isinstance(value, dict) and key in ("env", "serve_settings"):
            assert all(row[f"{key}.{k}"] != "" or v in (None, "") for k, v in value.items())
        else:
            assert key in row and (row[key] != "" or value in (None, "")), key
