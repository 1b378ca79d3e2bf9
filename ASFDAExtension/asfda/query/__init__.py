"""Query metrics (DKD, ASD, baselines) and the selection rules that turn them into a worklist."""
