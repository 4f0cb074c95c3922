from fabricdet.cli import main

raise SystemExit(main())
