import sys

from choirbench.cli import main

sys.exit(main())
