"""Measurement: the one timing-and-accuracy loop (`timing`), its latency statistics in trtexec's terms
(`stats`), the one comparison loop against a reference runner (`compare`), and GPU telemetry sampled with
NVML alongside (`telemetry`). Every loop is written once against the Runner interface.

May import: utils.core, utils.data, and utils.backends.base (the Runner interface) only: no backend
module, no records or reports.
"""
