"""``python -m aarm_pdp``."""

import sys

from aarm_pdp.cli import main

sys.exit(main())
