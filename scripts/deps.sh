#!/usr/bin/env bash
# deps.sh CMD[:PACKAGE] ... — make sure each command exists (or, for an
# absolute path, each file: a module a package installs), installing its
# Debian package when missing and running as root. Under CI=true a command
# that is still missing is an error; otherwise a warning (tests that need it
# then skip).
set -euo pipefail

have() {
	case "$1" in
	/*) [ -e "$1" ] ;;
	*) command -v "$1" >/dev/null 2>&1 ;;
	esac
}

missing=()
for spec in "$@"; do
	cmd=${spec%%:*}
	pkg=${spec#*:}
	have "$cmd" || missing+=("$cmd:$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

pkgs=()
for spec in "${missing[@]}"; do pkgs+=("${spec#*:}"); done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "deps: installing ${pkgs[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

status=0
for spec in "${missing[@]}"; do
	cmd=${spec%%:*}
	if ! have "$cmd"; then
		if [ "${CI:-}" = true ]; then
			echo "deps: $cmd is missing (Debian package ${spec#*:}); install it or run as root" >&2
			status=1
		else
			echo "deps: warning: $cmd is missing (Debian package ${spec#*:}); tests that need it will skip" >&2
		fi
	fi
done
exit $status
