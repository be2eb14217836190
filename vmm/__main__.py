# SPDX-License-Identifier: GPL-2.0-or-later
import sys

from vmm.cli import main

sys.exit(main())
