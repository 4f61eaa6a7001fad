"""Studies: what the commands run, composed from the layers below: validating and timing one spec into a
record (`validate`), comparing a runner with a reference into tables and a record (`compare`), and the
built-in demo (`demo`). The scripts (main.py, build_trt.py, ...) parse arguments and call these.

May import: every layer below (core, data, models, backends, measure, report).
"""
