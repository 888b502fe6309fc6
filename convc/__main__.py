import sys

from convc.cli import main

sys.exit(main())
