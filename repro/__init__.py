"""The reproduction suite (``canna reproduce``): the paper's tables and figures regenerated from
sweeps of training and inference jobs, side by side with the paper's published numbers."""
