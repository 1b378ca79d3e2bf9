from asfda.cli import main

raise SystemExit(main())
