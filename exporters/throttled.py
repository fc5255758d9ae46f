"""Raspberry Pi throttling flags for node_exporter's textfile collector.

The firmware's ``get_throttled`` word packs eight flags: bits 0-3 are the state
now, bits 16-19 the same four conditions latched since boot. This module turns
that word into Prometheus text (a pure function, :func:`render`) and writes it
atomically into the textfile collector directory (:func:`main`).

Why a textfile and not an exporter: a process started by a systemd timer every
30 s costs nothing between runs, while a resident exporter would hold ~15 MB
of the Pi's 1 GB for one integer. Stdlib only, so it runs with the system
``python3`` and needs nothing from the crawler's virtualenv.

Run as ``python3 -m exporters.throttled`` or ``python3 exporters/throttled.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

# Bit positions from the Raspberry Pi documentation of `vcgencmd get_throttled`.
FLAGS: Final[dict[str, int]] = {
    "under_voltage": 0,
    "freq_capped": 1,
    "throttled": 2,
    "soft_temp_limit": 3,
}
SINCE_BOOT_SHIFT: Final = 16

DEFAULT_OUTPUT: Final = Path("/var/lib/node_exporter/textfile_collector/rpi_throttled.prom")
SYSFS_PATH: Final = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
VCGENCMD_TIMEOUT_SECONDS: Final = 5.0

_HEX_RE: Final = re.compile(r"(?:throttled=)?(?:0x)?([0-9a-fA-F]+)")


class ThrottledError(Exception):
    """Raised when no get_throttled value can be read or parsed."""


def parse(text: str) -> int:
    """The integer in ``vcgencmd get_throttled`` output or the sysfs file.

    vcgencmd prints ``throttled=0x50005``; the kernel's sysfs attribute prints
    the same value as bare hex (``50005``), so both are read as hex.
    """
    match = _HEX_RE.fullmatch(text.strip())
    if match is None:
        raise ThrottledError(f"cannot parse get_throttled output {text.strip()!r}")
    return int(match.group(1), 16)


def flags(value: int) -> dict[tuple[str, str], bool]:
    """Every flag as ``(flag, when) -> set``, ``when`` being now or since_boot."""
    result: dict[tuple[str, str], bool] = {}
    for name, bit in FLAGS.items():
        result[(name, "now")] = bool(value >> bit & 1)
        result[(name, "since_boot")] = bool(value >> (bit + SINCE_BOOT_SHIFT) & 1)
    return result


def render(value: int) -> str:
    """Prometheus text exposition of one get_throttled word."""
    lines = [
        "# HELP rpi_throttled_flag Raspberry Pi firmware get_throttled flag (1 = set).",
        "# TYPE rpi_throttled_flag gauge",
    ]
    for (name, when), is_set in flags(value).items():
        lines.append(f'rpi_throttled_flag{{flag="{name}",when="{when}"}} {int(is_set)}')
    lines += [
        "# HELP rpi_throttled_raw Raspberry Pi firmware get_throttled word as an integer.",
        "# TYPE rpi_throttled_raw gauge",
        f"rpi_throttled_raw {value}",
    ]
    return "\n".join(lines) + "\n"


def read_value(sysfs: Path = SYSFS_PATH, vcgencmd: str = "vcgencmd") -> int:
    """The current get_throttled word, from vcgencmd or else the sysfs file.

    vcgencmd comes first: newer kernels mark the sysfs attribute deprecated and
    print a kernel warning with a backtrace on its first read.
    """
    errors: list[str] = []
    try:
        done = subprocess.run(
            [vcgencmd, "get_throttled"],
            capture_output=True,
            text=True,
            timeout=VCGENCMD_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        errors.append(f"{vcgencmd}: {exc}")
    else:
        if done.returncode == 0:
            return parse(done.stdout)
        errors.append(f"{vcgencmd}: exit {done.returncode}: {done.stderr.strip()}")
    try:
        return parse(sysfs.read_text())
    except OSError as exc:
        errors.append(f"{sysfs}: {exc}")
    raise ThrottledError("no get_throttled source: " + "; ".join(errors))


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` so node_exporter never reads a half-written file.

    The temporary file lives in the same directory (rename is atomic only
    within one file system) and does not end in ``.prom``, which the textfile
    collector would otherwise pick up.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="the .prom file to write"
    )
    parser.add_argument("--sysfs", type=Path, default=SYSFS_PATH, help="fallback source")
    parser.add_argument("--vcgencmd", default="vcgencmd", help="vcgencmd binary")
    parser.add_argument("--value", help="use this get_throttled output instead of reading one")
    args = parser.parse_args(argv)
    try:
        if args.value is not None:
            value = parse(args.value)
        else:
            value = read_value(args.sysfs, args.vcgencmd)
    except ThrottledError as exc:
        # Leave no stale file behind: an absent metric is what alerts should see.
        args.output.unlink(missing_ok=True)
        print(f"rpi_throttled: {exc}", file=sys.stderr)
        return 1
    write_atomically(args.output, render(value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
