"""Orchestration: the code that composes stages (dataset, render, run, artifacts, infer, eval) into a job.

Flows sit above every stage and below the CLI and the server; stages never import a flow. Kept import-light:
import the module you need (zlt.flows.kinds, zlt.flows.job_process, ...), nothing is re-exported here.
"""
