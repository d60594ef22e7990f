import sys

from .handle import main

sys.exit(main())
