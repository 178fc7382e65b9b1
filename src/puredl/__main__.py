"""`python -m puredl ...` is the `puredl` command (torchrun needs a module entry point)."""

import sys

from puredl.cli import main

sys.exit(main())
