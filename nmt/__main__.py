"""`python -m nmt <command> [options]`: the console scripts, without installing them."""

import sys

from nmt.cli import COMMANDS


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m nmt {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    command = sys.argv.pop(1)
    return COMMANDS[command](None)


if __name__ == "__main__":
    sys.exit(main())
