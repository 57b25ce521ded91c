"""``python -m kie_async`` runs the command line."""

import sys

from kie_async.cli import main

sys.exit(main())
