#!/usr/bin/env python
"""Command line entry point; the same as the installed ``acodm-gym`` console script."""

import sys

from acodm_gym.cli import main

if __name__ == "__main__":
    sys.exit(main())
