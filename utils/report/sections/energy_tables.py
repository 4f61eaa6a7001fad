"""Energy per image where a GPU's counter gave it (utils/measure/energy.py)."""
from __future__ import annotations

from typing import Sequence

from utils.report.doc import Doc, compose, fmt, sci, table
from utils.report.schema import Record
from utils.report.select import row_label, study_order

ENERGY_NOTE = ("Energy from NVML's counter over each row's timed window, for the whole GPU (idle power and any other "
               "work on it included): images/s per watt is images per joule where images/s is over the same window "
               "(pipelined rows); a window under a second gives no figure.")


def energy_markdown(records: Sequence[Record]) -> Doc:
    """Per GPU row: mean power, joules per image and images/s per watt over the timed window, or why there is no
    figure (a short window, no counter). Empty where no row ran on a GPU."""
    recs = [r for r in study_order(records) if r.energy_scope]
    if not recs:
        return compose()
    several = len({r.network for r in recs}) > 1
    rows = [[r.network] * several + [row_label(r), r.batch_size, r.mode,
             fmt(r.images_per_s, 1), fmt(r.power_mean_w, 1), sci(r.joules_per_image, ".4g"),
             fmt(r.images_per_s_per_watt, 2), fmt(r.energy_window_s, 2), r.energy_note or ""]
            for r in recs]
    head = ["network"] * several + ["runner", "batch", "mode", "images/s", "mean power (W)", "J / image",
                                    "images/s per W", "window (s)", "no figure because"]
    return compose("## Energy per image", ENERGY_NOTE, table(head, rows))
