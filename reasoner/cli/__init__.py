"""The `reasoner` command line."""

import signal
import sys
from pathlib import Path
from typing import NoReturn


def _interrupted_while_starting(signum: int, frame: object) -> NoReturn:
    # Ctrl-C while the command's modules load: one line, not a traceback from inside an import.
    # `main` puts Python's own handler back once it can catch the interrupt itself.
    sys.stderr.write("reasoner: interrupted\n")
    raise SystemExit(130)


# Only when this process is the command (the console script, or `python -m reasoner.cli.main`,
# whose argv[0] is "-m" while the package loads), never for a program that imports the package.
# A process started with SIGINT ignored (a background job of a script) keeps ignoring it.
if (Path(sys.argv[0]).name == "reasoner" or sys.argv[0] == "-m") and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
