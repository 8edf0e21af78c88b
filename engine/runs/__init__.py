"""Run folders as files, without torch: names, JSON and CSV readers, heatmap images."""
