import sys

from torchcheck.cli import main

sys.exit(main())
