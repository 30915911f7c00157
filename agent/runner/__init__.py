"""The `run` command's engine: profiles, planning, the run folder and workload execution."""

from agent.runner.execute import RunRequest, start_run

__all__ = ["RunRequest", "start_run"]
