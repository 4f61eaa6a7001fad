"""Results: one flat JSON record per measurement with its environment (`records`), and everything drawn
from records alone: Markdown tables in the original's layout and the comparison tables (`tables`), plots
(`plots`), and the redrawing of a whole results folder (`report`). No figure is computed here.

May import: utils.core, utils.measure (statistics and comparison results, to render them) and
utils.backends.registry (row labels only). Knows nothing of TensorRT or any backend's code.
"""
