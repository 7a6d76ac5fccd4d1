import sys

from captum_igcam.cli import main

sys.exit(main())
