"""The report's sections, one module per table (see SECTIONS in utils/report/sections/table.py)."""
