"""`python -m llava15` runs the command line."""

import sys

from llava15.cli import main

if __name__ == "__main__":
    sys.exit(main())
