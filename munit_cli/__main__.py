"""`python -m munit_cli` runs the same app as the `munit` console script."""

from munit_cli.cli import main

if __name__ == "__main__":
    main()
