"""The ``fieldshift`` command line: the builder's entry point.

Each command lives in the module of its domain and is registered here. Errors a person can act on
(:class:`greenboot.errors.UserError`) are printed as one line with a non-zero exit; ``--debug`` shows
the traceback and logs every external command.
"""

from __future__ import annotations

import logging
import sys

import click

from greenboot.errors import fail


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Log every external command and show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Build rpm-ostree commits from osbuild blueprints and publish signed releases."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    """Attach the command groups of each domain module (kept in one place, in CLI order)."""
    from builder.blueprint.commands import blueprint

    cli.add_command(blueprint)
    from builder.compose_commands import register as register_compose

    register_compose(cli, blueprint)
    from builder.keys import keys

    cli.add_command(keys)
    from builder.publish import publish_command

    cli.add_command(publish_command)
    from builder.bundle import bundle_command

    cli.add_command(bundle_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _register()
    try:
        cli.main(args=args, prog_name="fieldshift", standalone_mode=False)
    except click.exceptions.Abort:
        print("fieldshift: aborted", file=sys.stderr)
        sys.exit(130)
    except click.exceptions.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - top-level boundary
        fail(err, debug=debug, prog="fieldshift")


if __name__ == "__main__":
    main()
