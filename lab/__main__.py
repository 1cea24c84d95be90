"""``python -m lab`` is ``lab``."""

import sys

from lab._main import main

sys.exit(main())
