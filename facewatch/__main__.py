"""The `facewatch` command's entry point: it starts the analyser server before anything else.

Commands that analyse photos wait for that server to import MediaPipe (a quarter of a second);
starting it here, before the command line is even parsed, overlaps that with our own imports.
"""
import sys

ANALYSING = {"run", "scan", "resume"}


def command(argv: list) -> str:
    """The subcommand named in `argv` (the group's only option with a value is --config)."""
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return ""


def main() -> None:
    if command(sys.argv[1:]) in ANALYSING:
        from facewatch.analysis.pool import start_analyser_server
        start_analyser_server()
    from facewatch.cli.main import main as cli
    cli()


if __name__ == "__main__":
    main()
