"""``python -m chemlatent.app.cli``: the command line, as the ``chemlatent`` entry point."""

import sys

from chemlatent.app.cli import main

sys.exit(main())
