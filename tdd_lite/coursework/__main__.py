import sys

from tdd_lite.coursework import main

sys.exit(main())
