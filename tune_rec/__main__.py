from tune_rec.cli import main

raise SystemExit(main())
