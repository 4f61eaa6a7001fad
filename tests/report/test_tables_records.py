"""Tables of utils/report/tables.py, checked cell by cell (the mutation run's survivors killed here)."""
from __future__ import annotations
