"""The `checkpoint` event of a launched run marks a checkpoint that every rank has finished writing.

`--resume` trusts the last `checkpoint` event. Global rank 0 writes it, so it
must wait for the other ranks' files, or a kill right after the event leaves
a resume with a truncated file of rank 1 (seen once as a truncated
`optimizer.tp01.pdopt`). Here rank 1 writes its checkpoint files slowly: a
`sitecustomize` module, on the workers' PYTHONPATH for this test only, makes
`paddle.save` on global rank 1 wait before writing into a checkpoint folder,
as a slow disk would.
"""

import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from certification.records import read_jsonl

from tests.agent.launching import REPO, environment, launch_failure, launcher_command, run_arguments

WORKLOAD = "pretrain-llama"
SLOW_SAVE_SECONDS = 4

SLOW_RANK_ONE = f"""
import os
if os.environ.get("PADDLE_TRAINER_ID") == "1":
    import time
    import paddle

    _save = paddle.save

    def _slow_save(obj, path, *args, **kwargs):
        if "checkpoint-" in str(path):
            time.sleep({SLOW_SAVE_SECONDS})
        return _save(obj, path, *args, **kwargs)

    paddle.save = _slow_save
"""


@pytest.fixture(scope="module")
def slow_rank_one_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slow-rank-one")
    (folder / "site").mkdir()
    (folder / "site" / "sitecustomize.py").write_text(SLOW_RANK_ONE, encoding="utf-8")
    env = environment()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder / "site"), env.get("PYTHONPATH")]))
    command = [*launcher_command(folder / "logs", "--nproc_per_node", "2"),
               *run_arguments(folder / "run", WORKLOAD, "--set", "tensor_parallel_degree=2")]
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, launch_failure(completed, folder / "logs")
    return folder / "run"


@pytest.mark.slow
def test_checkpoint_event_follows_every_rank_file(slow_rank_one_run):
    events = [record for record in read_jsonl(slow_rank_one_run / "events.jsonl") if record["event"] == "checkpoint"]
    assert events, "the run recorded no checkpoint"
    for event in events:
        checkpoint = slow_rank_one_run / event["path"]
        rank_one_files = sorted(checkpoint.glob("*tp01*"))
        assert rank_one_files, f"{checkpoint} holds no file of tensor-parallel rank 1"
        written = max(path.stat().st_mtime for path in rank_one_files)
        # Event times have whole seconds, so the event may read up to one second before the last file's time.
        recorded = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
        assert recorded >= written - 1, (
            f"the checkpoint event of step {event['step']} ({event['time']}) came "
            f"{written - recorded:.1f} s before rank 1 finished {checkpoint.name}")
