"""One module per `munit` command; cli.py registers them on the Typer app."""
