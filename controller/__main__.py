"""``python -m controller``: run the controller process."""

from controller.main import main

raise SystemExit(main())
