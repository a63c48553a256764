"""The `munit` Typer app: global options and command registration.

Each command lives in munit_cli/commands/; this module only wires them together.
"""

from __future__ import annotations

import typer

from munit_cli import __version__
from munit_cli.commands.bench import bench
from munit_cli.commands.classifier import train_classifier_cmd
from munit_cli.commands.data import data_app
from munit_cli.commands.detector import eval_detector_cmd, train_detector_cmd
from munit_cli.commands.eval import eval_cmd
from munit_cli.commands.export import export
from munit_cli.commands.heads import heads
from munit_cli.commands.import_official import import_official
from munit_cli.commands.info import info
from munit_cli.commands.sample_styles import sample_styles
from munit_cli.commands.train import train
from munit_cli.commands.translate import translate
from munit_cli.commands.webui import ui_cmd
from munit_cli.ui import state

app = typer.Typer(
    name="munit",
    help="Multimodal unsupervised image-to-image translation (MUNIT): train, translate, export.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"munit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    state.debug = debug


app.command("info")(info)
app.command("export")(export)
app.command("import-official")(import_official)
app.command("translate")(translate)
app.command("sample-styles")(sample_styles)
app.command("train")(train)
app.command("bench")(bench)
app.command("train-classifier")(train_classifier_cmd)
app.command("eval")(eval_cmd)
app.command("heads")(heads)
app.command("train-detector")(train_detector_cmd)
app.command("eval-detector")(eval_detector_cmd)
app.command("ui")(ui_cmd)
app.add_typer(data_app, name="data")


def main() -> None:
    app()
