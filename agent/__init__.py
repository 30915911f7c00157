"""The vendor-side agent: runs the certification workloads and packs the result bundle."""

__version__ = "0.1.0"
