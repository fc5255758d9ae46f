"""A throwaway PostgreSQL for bench/run.sh: `start DIR` prints its DSN, `stop DIR` removes it.

It is the test suite's own helper (tests/helpers.py), so the benchmark needs nothing the README's
test command does not install.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import PostgresServer


def main(command: str, work: Path) -> None:
    state = work / "pg.pickle"
    if command == "start":
        server = PostgresServer()
        server.start()
        state.write_bytes(pickle.dumps(server))
        print(server.create_database())
    else:
        pickle.loads(state.read_bytes()).destroy()
        state.unlink()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
