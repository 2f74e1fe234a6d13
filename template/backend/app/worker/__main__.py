"""`python -m app.worker`: run the RQ worker (see worker.py)."""

import sys

from app.worker.worker import main

sys.exit(main())
