import sys

from datafree.cli import main

sys.exit(main())
