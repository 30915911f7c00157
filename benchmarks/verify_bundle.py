"""Benchmark: verify a bundle of at least 1 GiB and compare with `sha256sum` over the same bytes.

    python benchmarks/verify_bundle.py [--size-mib 1100] [--repeat 3] [--keep DIR]

It packs a synthetic run folder (run.json plus large binary files) with the
real bundle writer and a fresh key. With the file in the page cache, it then
times `sha256sum BUNDLE` and `open_bundle(BUNDLE)` (archive pass, signature,
manifest and every digest) in alternation and keeps the best of each. Peak
memory is the maximum resident set size of a child process that only
verifies, measured for a small bundle and for the large one: bounded memory
means the two are about the same. The target is a verify speed of at least
70% of sha256sum's. Results go to stdout as text and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from certification.archive import Limits  # noqa: E402
from certification.bundle import open_bundle, write_bundle  # noqa: E402
from certification.signing import Keyring, generate_key, save_public_key  # noqa: E402

MIB = 1024 * 1024
FILE_MIB = 220
TARGET_RATIO = 0.70
# Budgets raised above the defaults (1 GiB of contents) so the large bundle fits.
LIMITS = Limits(max_archive_bytes=8 * 1024**3, max_total_bytes=8 * 1024**3)
CHILD = """
import resource, sys
sys.path.insert(0, {root!r})
from certification.archive import Limits
from certification.bundle import open_bundle
LIMITS = Limits(max_archive_bytes=8 * 1024**3, max_total_bytes=8 * 1024**3)
from certification.signing import Keyring, load_public_key_file
bundle = open_bundle(sys.argv[1], Keyring([load_public_key_file(sys.argv[2])]), LIMITS)
assert bundle.read_json("run.json")["run_id"] == "bench"
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def build_run(folder: Path, size_mib: int) -> None:
    """Write run.json and binary files of FILE_MIB MiB (the last one shorter) adding up to size_mib."""
    folder.mkdir(parents=True)
    run = {"run_id": "bench", "started_at": "2026-01-01T00:00:00+00:00", "rule_pack": {"name": "bench-1", "sha256": "0" * 64}}
    (folder / "run.json").write_text(json.dumps(run) + "\n", encoding="utf-8")
    remaining, number = size_mib, 0
    while remaining > 0:
        chunk_mib = min(FILE_MIB, remaining)
        write_random(folder / "workloads" / "bench" / f"blob-{number:02d}.bin", chunk_mib)
        remaining -= chunk_mib
        number += 1


def write_random(path: Path, size_mib: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(MIB)
    with open(path, "wb") as stream:
        # A fixed first line keeps random bytes from starting like a compressed file.
        stream.write(b"benchmark data\n")
        for index in range(size_mib):
            stream.write(block[index % 7:] + block[:index % 7])


def time_sha256sum(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["sha256sum", str(path)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_openssl(path: Path) -> float | None:
    """Time OpenSSL's sha256 over the file, the hash code Python's hashlib uses; None without openssl."""
    if shutil.which("openssl") is None:
        return None
    started = time.perf_counter()
    subprocess.run(["openssl", "dgst", "-sha256", str(path)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_verify(path: Path, keyring: Keyring) -> float:
    started = time.perf_counter()
    open_bundle(path, keyring, LIMITS)
    return time.perf_counter() - started


def peak_rss_mib(path: Path, public_key: Path) -> float:
    """Verify in a fresh interpreter and return its peak resident memory in MiB."""
    result = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(path), str(public_key)],
                            check=True, capture_output=True, text=True)
    return int(result.stdout.strip()) / 1024


def pack(folder: Path, size_mib: int, name: str, key) -> Path:
    build_run(folder / name, size_mib)
    info = write_bundle(folder / name, folder / f"{name}.tar", key)
    shutil.rmtree(folder / name)
    return info.path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1100, help="bundle contents in MiB (default 1100, over 1 GiB)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side (default 3)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary folder)")
    options = parser.parse_args()

    folder = options.keep or Path(tempfile.mkdtemp(prefix="verify-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return run_benchmark(folder, options)
    finally:
        if options.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def run_benchmark(folder: Path, options) -> int:
    key = generate_key()
    public_key = folder / "bench.pub"
    save_public_key(key, public_key)
    keyring = Keyring([key.public_key])
    small = pack(folder, 64, "small", key)
    large = pack(folder, options.size_mib, "large", key)
    size = large.stat().st_size

    time_sha256sum(large)  # bring the file into the page cache
    sha_times, verify_times, openssl_times = [], [], []
    for _ in range(options.repeat):
        sha_times.append(time_sha256sum(large))
        verify_times.append(time_verify(large, keyring))
        openssl_times.append(time_openssl(large))
    sha_speed, verify_speed = size / min(sha_times) / MIB, size / min(verify_times) / MIB
    openssl_speed = size / min(openssl_times) / MIB if None not in openssl_times else None
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
        "python": platform.python_version(),
        "bundle_bytes": size,
        "sha256sum_mib_s": round(sha_speed, 1),
        "verify_mib_s": round(verify_speed, 1),
        "ratio": round(verify_speed / sha_speed, 3),
        "openssl_sha256_mib_s": round(openssl_speed, 1) if openssl_speed else None,
        "ratio_to_openssl": round(verify_speed / openssl_speed, 3) if openssl_speed else None,
        "target_ratio": TARGET_RATIO,
        "peak_rss_mib_small": round(peak_rss_mib(small, public_key), 1),
        "small_bundle_bytes": small.stat().st_size,
        "peak_rss_mib_large": round(peak_rss_mib(large, public_key), 1),
        "own_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"bundle: {size / MIB:.0f} MiB; sha256sum {sha_speed:.0f} MiB/s; verify {verify_speed:.0f} MiB/s; "
          f"ratio {result['ratio']:.2f} (target {TARGET_RATIO:.2f}); openssl dgst -sha256 {result['openssl_sha256_mib_s']} MiB/s")
    print(f"peak memory of a verifying process: {result['peak_rss_mib_small']} MiB for {small.stat().st_size / MIB:.0f} MiB, "
          f"{result['peak_rss_mib_large']} MiB for {size / MIB:.0f} MiB")
    print(json.dumps(result))
    return 0 if result["ratio"] >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
