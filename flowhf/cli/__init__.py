"""The `flowhf` command line: every argparse parser of the project lives in this package.

Nothing below it imports it; a subcommand parses its flags here and calls the library or
`flowhf.experiments`.
"""

from flowhf.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
