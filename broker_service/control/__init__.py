"""Compaction, autoscaling, balancing, recovery as plain functions: the control-plane issue."""
