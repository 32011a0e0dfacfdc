from sme.cli import main

raise SystemExit(main())
