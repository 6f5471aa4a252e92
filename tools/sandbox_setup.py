"""`python -m reasoner.tools.sandbox_setup`: install the Python sandbox's runtime ahead of first use.

Fetches Pyodide from the npm registry (through Deno's npm client) and takes the boot snapshot,
so that a machine which will later be offline, or a CI job, does not pay for it in a run.
"""

from __future__ import annotations

import sys

from reasoner.tools.sandbox_runtime import PYODIDE_VERSION, SandboxUnavailable, home, install


def main() -> None:
    try:
        found = install()
    except SandboxUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"sandbox ready in {home()}: Deno {found.deno}, Pyodide {PYODIDE_VERSION}, snapshot {found.snapshot.name}")


if __name__ == "__main__":
    main()
