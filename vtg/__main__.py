import sys

from vtg.cli import main

sys.exit(main())
