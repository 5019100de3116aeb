"""`python -m istiod_py.cli ...`, as tests and the demo start the control plane."""

import sys

from istiod_py.cli.app import main

sys.exit(main())
