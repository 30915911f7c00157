"""Benchmark: export the static site of 1,000 certified cards; target under 60 seconds.

    python benchmarks/export_site.py [--cards 1000]

Builds a fresh SQLite portal with the cards (not timed), then times
`manage.py export_site` into an empty folder and counts the files written.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from portal_data import populate, setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=1000, help="certified cards in the database (default 1000)")
    options = parser.parse_args()

    setup_django()
    populate(options.cards)
    from django.core.management import call_command

    target = Path(tempfile.mkdtemp(prefix="site-")) / "site"
    started = time.perf_counter()
    call_command("export_site", str(target), "--base-url", "https://cert.example.org")
    elapsed = time.perf_counter() - started

    files = [path for path in target.rglob("*") if path.is_file()]
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "machine": platform.platform(), "cards": options.cards,
              "seconds": round(elapsed, 2), "files": len(files), "bytes": sum(path.stat().st_size for path in files), "target_s": 60}
    print(f"exported {len(files)} files for {options.cards} cards in {elapsed:.1f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
