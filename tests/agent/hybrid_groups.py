"""Set up the hybrid-parallel groups of tensor degree 2 and pipeline degree 2, and sum each process's rank over each group.

Run under `paddle.distributed.launch --nproc_per_node 4`. With `--fix`, the
agent's Paddle fixes are applied first. Each process writes its groups and
sums as JSON to `OUT/rank-<global rank>.json`.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--fix", action="store_true")
    options = parser.parse_args()

    import paddle
    import paddle.distributed as dist
    from paddle.distributed import fleet

    if options.fix:
        from agent.workloads import patches

        patches.apply()
    paddle.set_device("cpu")
    strategy = fleet.DistributedStrategy()
    strategy.hybrid_configs = {"dp_degree": 1, "mp_degree": 2, "pp_degree": 2, "sharding_degree": 1}
    fleet.init(is_collective=True, strategy=strategy)
    groups = fleet.get_hybrid_communicate_group()

    rank = dist.get_rank()
    result = {}
    for name, group in [("tensor", groups.get_model_parallel_group()), ("pipeline", groups.get_pipe_parallel_group())]:
        total = paddle.to_tensor([rank], dtype="int64")
        dist.all_reduce(total, group=group)
        result[name] = {"ranks": group.ranks, "sum": int(total)}
    (options.out / f"rank-{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    from agent.cli import exit_process

    # As the agent's launched processes do: skip the interpreter teardown, where a worker sometimes died of SIGABRT.
    main()
    exit_process(0)
