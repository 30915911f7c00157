"""Benchmark: render one certificate PDF with WeasyPrint (embedded CJK font, QR code); target under 2 seconds.

    python benchmarks/certificate_pdf.py [--repeat 10]

Prints the first render (fonts loaded cold in this process), then the median
and maximum of the following renders, as text and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone

from portal_data import populate, setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="renders after the first (default 10)")
    options = parser.parse_args()

    setup_django()
    populate(1)
    from portal.certificates.models import Certificate
    from portal.certificates.pdf import render_certificate_pdf

    certificate = Certificate.objects.select_related("card__vendor", "rule_pack").get()
    seconds = []
    for _ in range(options.repeat + 1):
        started = time.perf_counter()
        size = len(render_certificate_pdf(certificate))
        seconds.append(time.perf_counter() - started)

    result = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "machine": platform.platform(),
              "first_s": round(seconds[0], 3), "median_s": round(statistics.median(seconds[1:]), 3), "max_s": round(max(seconds[1:]), 3),
              "pdf_bytes": size, "target_s": 2.0}
    print(f"first render {result['first_s']} s, then median {result['median_s']} s, max {result['max_s']} s ({size} bytes)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
