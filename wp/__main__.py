from wp.cli import main

raise SystemExit(main())
