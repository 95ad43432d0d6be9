"""Tasks, the discrete-SAE circuit finder, patching baselines, JSON circuit reports."""
