"""Benchmark: the upload page's sha256 of a file in headless Chromium, on the page's main thread and in the Web Worker.

    python benchmarks/browser_sha256.py [--size-mib 256] [--part-mib 8] [--repeat 3]

It writes a file of random bytes and serves static/js and a bare test page
from a local HTTP server on 127.0.0.1 (Chromium starts no Web Worker from a
file:// page). Debian's /usr/bin/chromium, driven by Playwright, then hashes
the file with Sha256.hashBlob() of static/js/sha256.js in two ways, in
alternation:

- main: on the page's main thread, as the upload page did before the worker
  and still does where a browser has no Web Workers;
- worker: in static/js/sha256_worker.js, as the upload page does now.

For each run it records the hashing speed and the longest gap between ticks
of a 10 ms timer on the page's main thread while hashing: the longest time
the page could not react to input. The best speed and the worst gap of the
runs count. The digest is checked against hashlib. Results go to stdout as
text and one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
MIB = 1024 * 1024
PAGE = b"""<!doctype html><meta charset="utf-8"><title>sha256 benchmark</title>
<input type="file" id="file"><script src="/js/sha256.js"></script>"""

# Hash the chosen file on this page or in the worker, while a 10 ms timer measures
# how long the main thread stays busy between ticks.
HASH = """async ([mode, partBytes]) => {
  const file = document.getElementById("file").files[0];
  let last = performance.now(), longestGap = 0;
  const timer = setInterval(() => { const now = performance.now(); longestGap = Math.max(longestGap, now - last); last = now; }, 10);
  const started = performance.now();
  let digest;
  if (mode === "main") {
    digest = await Sha256.hashBlob(file, {partBytes: partBytes});
  } else {
    const worker = new Worker("/js/sha256_worker.js");
    digest = await new Promise((resolve, reject) => {
      worker.onmessage = (event) => {
        if (event.data.type === "done") { resolve(event.data.sha256); }
        if (event.data.type === "error") { reject(new Error(event.data.message)); }
      };
      worker.postMessage({sha256Url: new URL("/js/sha256.js", location.href).href, file: file, partBytes: partBytes, midstate: null});
    });
    worker.terminate();
  }
  const seconds = (performance.now() - started) / 1000;
  clearInterval(timer);
  return {digest: digest, seconds: seconds, longestGapMs: Math.max(longestGap, performance.now() - last)};
}"""


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serve static/ plus the test page at /, quietly."""

    def do_GET(self):  # noqa: N802 - the name http.server calls
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)
            return
        super().do_GET()

    def log_message(self, format, *args):  # noqa: A002 - the signature of http.server
        pass


def write_random_file(path: Path, size_mib: int) -> str:
    """Write size_mib MiB of random bytes to `path` and return their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as target:
        for _ in range(size_mib):
            block = os.urandom(MIB)
            digest.update(block)
            target.write(block)
    return digest.hexdigest()


def measure(page, mode: str, part_bytes: int, expected: str) -> dict:
    result = page.evaluate(HASH, [mode, part_bytes])
    if result["digest"] != expected:
        raise SystemExit(f"{mode}: the browser computed sha256 {result['digest']}, hashlib {expected}")
    return result


def chromium_version() -> str:
    return subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="size of the hashed file in MiB (default 256)")
    parser.add_argument("--part-mib", type=int, default=8, help="hash part size in MiB, as the upload page's (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each mode (default 3)")
    args = parser.parse_args()
    if not CHROMIUM.is_file():
        raise SystemExit(f"{CHROMIUM} is missing; install it with `apt-get install -y chromium`")
    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(ROOT / "static")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    runs: dict[str, list[dict]] = {"main": [], "worker": []}
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        path = Path(folder) / "random.bin"
        expected = write_random_file(path, args.size_mib)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(600_000)
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.set_input_files("#file", str(path))
        for _ in range(args.repeat):
            for mode in runs:
                runs[mode].append(measure(page, mode, args.part_mib * MIB, expected))
        browser.close()
    server.shutdown()

    summary = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {platform.node()}",
        "chromium": chromium_version(), "size_mib": args.size_mib, "part_mib": args.part_mib, "repeat": args.repeat,
    }
    for mode, results in runs.items():
        speed = max(args.size_mib / result["seconds"] for result in results)
        gap = max(result["longestGapMs"] for result in results)
        summary[mode] = {"mib_per_s": round(speed, 1), "longest_main_thread_gap_ms": round(gap, 1)}
        print(f"{mode:>6}: best {speed:.1f} MiB/s, longest main-thread gap {gap:.0f} ms over {len(results)} runs")
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
