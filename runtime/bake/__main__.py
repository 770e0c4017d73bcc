import sys

from runtime.bake.bake import main

sys.exit(main())
