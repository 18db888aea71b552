"""``python -m invcomp.cli``: the same as the ``invcomp`` command."""
import sys

from . import main

sys.exit(main())
