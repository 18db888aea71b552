"""``python -m invcomp.cli``: the same as the ``invcomp`` command."""
import sys

from invcomp.cli import main

sys.exit(main())
