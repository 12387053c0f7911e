import sys

from broker_service.cli import main

sys.exit(main())
