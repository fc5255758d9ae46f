"""Where the megabytes of `crawler once` go: RSS at each stage of a real run, and by import.

Usage: .venv/bin/python bench/rss_imports.py -c FILE [SOURCE ...] [--top N] [--python-heap]

Runs `crawler once -c FILE` in this process, as the installed command does, with an import hook
that charges every module with the RSS that appeared while it loaded, minus what the modules it
imported in turn added (so a package's figure is its own), and prints:

- checkpoints: the interpreter alone; the command's imports done (its first source run
  starts); the peak (getrusage's ru_maxrss, what /usr/bin/time reports); the end;
- the imports by top-level package, largest first, each with the chain that first pulled it in.

RSS by module is approximate: the allocators take memory in blocks (pymalloc's 1 MiB arenas,
glibc's heap), so a module may be charged a block its neighbours then fill. `--python-heap`
charges tracemalloc's count of Python allocations instead (exact, but blind to C libraries and
shared objects, and tracemalloc itself swells the RSS, so the checkpoints are then not
comparable with a plain run). The in-process RSS reads low, by 1-1.5 MiB at the peak in our
runs (the kernel's per-CPU counts of resident pages are summed exactly only when the process
exits): bench/run.sh's peak RSS, from /usr/bin/time, is the figure that counts.
"""

from __future__ import annotations

import resource

_statm = open("/proc/self/statm")  # noqa: SIM115 (read on every import, for the whole run)


def rss_kib() -> int:
    _statm.seek(0)
    return int(_statm.read().split()[1]) * resource.getpagesize() // 1024


INTERPRETER = rss_kib()  # before this script's own imports

import argparse  # noqa: E402 (after the interpreter's own RSS is read)
import importlib.abc  # noqa: E402
import importlib.machinery  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402


def heap_kib() -> int:
    return tracemalloc.get_traced_memory()[0] // 1024


class Charges:
    """Each module's own share of the meter while it loaded, and who imported it."""

    def __init__(self, meter: Callable[[], int]) -> None:
        self.meter = meter
        self.own: dict[str, int] = defaultdict(int)
        self.parent: dict[str, str | None] = {}
        self._stack: list[list[Any]] = []  # [module, meter at start, charged to children]

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        # None: imported at run time by a function (a lazy import), not by another import.
        self.parent.setdefault(name, self._stack[-1][0] if self._stack else None)
        self._stack.append([name, self.meter(), 0])
        try:
            return fn()
        finally:
            _, start, children = self._stack.pop()
            grown = self.meter() - start
            self.own[name] += grown - children
            if self._stack:
                self._stack[-1][2] += grown

    def chain(self, name: str) -> list[str]:
        out = [name]
        while (up := self.parent.get(out[-1])) is not None and up not in out:
            out.append(up)
        return out


class _Loader(importlib.abc.Loader):
    """The real loader, with its module's creation and execution charged to the module."""

    def __init__(self, loader: Any, name: str, charges: Charges) -> None:
        self._loader, self._name, self._charges = loader, name, charges

    def __getattr__(self, attr: str) -> Any:  # get_source, get_data, …: the real loader's
        return getattr(self._loader, attr)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._charges.run(
            self._name, lambda: self._loader.create_module(spec)
        )
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._charges.run(self._name, lambda: self._loader.exec_module(module))


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, charges: Charges) -> None:
        self.charges = charges

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, name, self.charges)
                return spec
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("sources", nargs="*")
    ap.add_argument("--top", type=int, default=25, help="packages listed (default 25)")
    ap.add_argument("--python-heap", action="store_true", help="charge Python allocations")
    args = ap.parse_args()
    if args.python_heap:
        tracemalloc.start()
    meter = heap_kib if args.python_heap else rss_kib
    unit = "Python heap" if args.python_heap else "RSS"
    checkpoints: list[tuple[str, int]] = []
    if not args.python_heap:  # tracemalloc counts from its start only
        checkpoints.append(("interpreter alone", INTERPRETER))
        checkpoints.append(("and this script's own imports (argparse, importlib, …)", meter()))
    charges = Charges(meter)
    sys.meta_path.insert(0, _Finder(charges))

    from crawler.cli import main as crawler_main
    from crawler.run.pipeline import Pipeline

    run_source = Pipeline.run_source

    async def first_run_marked(self: Pipeline, source: Any) -> Any:
        if not any(label.startswith("imports done") for label, _ in checkpoints):
            checkpoints.append(("imports done, first source run starts", meter()))
        return await run_source(self, source)

    Pipeline.run_source = first_run_marked  # type: ignore[method-assign]
    started = time.monotonic()
    status = crawler_main(["once", "-c", args.config, *args.sources])
    seconds = time.monotonic() - started
    if args.python_heap:
        checkpoints.append(("peak", tracemalloc.get_traced_memory()[1] // 1024))
    else:
        checkpoints.append(("peak (ru_maxrss)", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    checkpoints.append(("end of the run", meter()))

    out = sys.stdout
    print(f"\n`crawler once -c {args.config}`: exit {status}, {seconds:.1f} s; {unit}:", file=out)
    for label, kib in checkpoints:
        print(f"  {kib / 1024:6.1f} MiB  {label}", file=out)
    by_package: dict[str, int] = defaultdict(int)
    first: dict[str, str] = {}
    for name in charges.parent:  # in the order the imports began
        first.setdefault(name.split(".")[0], name)
    for name, kib in charges.own.items():
        by_package[name.split(".")[0]] += kib
    total = sum(by_package.values())
    print(f"\nimports by package ({unit} MiB, own; {total / 1024:.1f} MiB in all):", file=out)
    for top, kib in sorted(by_package.items(), key=lambda kv: -kv[1])[: args.top]:
        via = " <- ".join(charges.chain(first[top])[1:4]) or "a function (lazily) or this script"
        print(f"  {kib / 1024:6.2f}  {top:<22} via {via}", file=out)
    return status


if __name__ == "__main__":
    sys.exit(main())
