"""`python -m wanda` is the same as the `wanda` command."""

from wanda.cli import main

raise SystemExit(main())
