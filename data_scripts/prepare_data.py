#!/usr/bin/env python
"""Prepare data/cifar10 and data/cifar2 for the book: `python data_scripts/prepare_data.py --help`.

A thin wrapper around `python -m torchbook.data`; the logic lives in `torchbook.data`.
"""
import sys
from pathlib import Path

try:
    from torchbook.data import main
except ImportError:  # run from a checkout where torchbook is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from torchbook.data import main

if __name__ == "__main__":
    sys.exit(main())
