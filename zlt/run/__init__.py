"""Run a trainer subprocess: launch it, parse its output into events, supervise it, find its checkpoints.

The flow that composes these with preflight, the dataset, rendering and the artifact is `zlt.flows.training`
(`run_training(TrainRequest(...))`, the one entry point for zlt train, the job worker and the HTTP API).
"""
