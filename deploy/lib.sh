# shellcheck shell=bash
# Shared by deploy/install and deploy/uninstall: the target root, the dry-run
# switch and small helpers. Sourced, never run.
#
# With --root DIR every file lands under DIR and every command that would
# change the system (apt-get, useradd, chown, systemctl, pip) is printed as
# "+ command" instead of run, so the whole script can be tested on a machine
# it must not change. --dry-run is --root into a fresh temporary directory.

ROOT=""
DRY_RUN=0

# Prints a command, and runs it unless this is a dry run.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [ "$DRY_RUN" -eq 0 ]; then
    "$@"
  fi
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Sets ROOT and DRY_RUN from --root DIR / --dry-run; other arguments are left
# in REST for the caller.
REST=()
HELP=0
parse_root_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --root)
        [ $# -ge 2 ] || die "--root needs a directory"
        ROOT="$(cd "$2" && pwd)" || die "--root $2: no such directory"
        DRY_RUN=1
        shift 2
        ;;
      --dry-run)
        ROOT="$(mktemp -d)"
        DRY_RUN=1
        shift
        ;;
      -h|--help)
        REST+=("$1")
        HELP=1
        shift
        ;;
      *)
        REST+=("$1")
        shift
        ;;
    esac
  done
  if [ "$DRY_RUN" -eq 0 ] && [ "$HELP" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or try --dry-run"
  fi
  if [ "$DRY_RUN" -eq 1 ]; then
    say "dry run: files go under $ROOT, system commands are only printed"
  fi
}

# Copies a repository-managed file into place, replacing any older copy.
put() {
  local src=$1 dest=$2 mode=$3
  install -D -m "$mode" "$src" "$ROOT$dest"
  printf '  %s\n' "$dest"
}

# Is FILE an OpenPGP key whose (primary) fingerprint is FPR? Uses gpg without a
# keyring of its own, so nothing is imported anywhere.
key_has_fingerprint() {
  local file=$1 fpr=$2 got home
  home="$(mktemp -d)"
  got="$(GNUPGHOME="$home" gpg --batch --show-keys --with-colons "$file" 2>/dev/null |
    awk -F: '$1 == "fpr" {print $10; exit}')"
  rm -rf "$home"
  [ -n "$got" ] && [ "$got" = "$fpr" ]
}

# Is systemd the init system here (and not a chroot or container without it)?
have_systemd() {
  [ "$DRY_RUN" -eq 1 ] || [ -d /run/systemd/system ]
}

# Does the installed node_exporter know --web.config.file (1.0 and later)? Its help text is
# read whole first: `--help | grep -q` under pipefail lost the race whenever grep exited at the
# match before node_exporter finished writing, which killed it with SIGPIPE (exit 141) and read
# as "no support" (13 of 40 tries on a real install).
node_exporter_knows_web_config() {
  local help
  help="$(prometheus-node-exporter --help 2>&1 || true)"
  [[ "$help" == *--web.config.file* ]]
}

# Is this a Raspberry Pi whose firmware rpi-throttled.service can ask (the devices vcgencmd
# opens, or the kernel's get_throttled file)? rpi-throttled.service has the same conditions.
is_raspberry_pi() {
  [ -e /dev/vcio ] || [ -e /dev/vchiq ] ||
    [ -e /sys/devices/platform/soc/soc:firmware/get_throttled ]
}
