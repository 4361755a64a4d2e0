import sys

from gdnlab.cli import main

sys.exit(main())
