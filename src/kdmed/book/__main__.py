"""``python -m kdmed.book``."""

import sys

from kdmed.book.cli import main

sys.exit(main())
