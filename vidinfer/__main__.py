import sys

from vidinfer.cli import main

sys.exit(main())
