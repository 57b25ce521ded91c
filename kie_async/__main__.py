"""``python -m kie_async`` runs the command line."""

import sys

from kie_async.interfaces.cli import main

sys.exit(main())
