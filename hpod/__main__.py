import sys

from hpod.cli import main

sys.exit(main())
