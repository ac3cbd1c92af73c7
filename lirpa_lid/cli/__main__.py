"""``python -m lirpa_lid.cli``."""
import sys

from lirpa_lid.cli.app import main

sys.exit(main())
