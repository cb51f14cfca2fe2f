"""Allow ``python -m bigbrotr``."""

import sys

from bigbrotr.cli import main

sys.exit(main())
