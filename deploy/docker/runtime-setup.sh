#!/bin/sh
# Prepares the runtime image's root file system (run inside it as root): installs the runtime
# packages and creates tmemd's user and state directory. Used by the Dockerfile's runtime
# stage and by check-runtime.sh, so both make the same image.
#   runtime-setup.sh PACKAGE_LIST
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
grep -v '^#' "$1" | xargs apt-get install -y -qq --no-install-recommends >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/*
groupadd --gid 10001 tmem
useradd --uid 10001 --gid tmem --no-create-home --no-log-init --home-dir /var/lib/tmem \
  --shell /usr/sbin/nologin tmem
install -d -o tmem -g tmem -m 0700 /var/lib/tmem
install -d -m 0755 /etc/tmem
