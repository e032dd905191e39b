#!/usr/bin/env bash
# The run command (README): installs what is missing, builds, formats a default file-backed cache
# device if there is none, and demonstrates the page pool engine on it.
#   TMEM_DATA_DIR   where the device file and the page index live (default /var/tmp/tmem)
#   TMEM_DEVICE_SIZE size of the device file when it is created (default 1G)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${TMEM_DATA_DIR:-/var/tmp/tmem}
SIZE=${TMEM_DEVICE_SIZE:-1G}
scripts/setup.sh
bazel build //server/tools:tmem-admin 2>&1 | grep -E 'ERROR|error:' && exit 1
ADMIN=bazel-bin/server/tools/tmem-admin
mkdir -p "$DATA"
if [ ! -s "$DATA/cache.img" ]; then
  "$ADMIN" format --device="$DATA/cache.img" --size="$SIZE" --metadata-dir="$DATA/index"
fi
"$ADMIN" inspect --device="$DATA/cache.img"
echo
"$ADMIN" demo --device="$DATA/cache.img" --metadata-dir="$DATA/index"
