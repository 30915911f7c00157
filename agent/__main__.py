import sys
from pathlib import Path

if not __package__:
    # Started as a script, as `python -m paddle.distributed.launch ... agent/__main__.py run ...` starts each
    # process: import the package from the repository instead of its modules from this folder.
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

from agent.cli import exit_process, main  # noqa: E402

exit_process(main())
