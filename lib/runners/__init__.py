"""Runners: one module per place a job can run. Each returns a RunOutcome."""
