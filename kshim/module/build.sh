#!/usr/bin/env bash
# Builds tmem_shim.ko against a configured kernel tree (with Module.symvers).
# usage: kshim/module/build.sh KERNEL_TREE OUT_DIR      -> OUT_DIR/tmem_shim.ko
set -euo pipefail
ksrc=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
# Kbuild wants every object in the module's directory: stage the module, core and ABI header.
cp "$here"/Kbuild "$here"/tmem_shim_main.c "$here"/../core/*.[ch] "$here"/../include/tmem_shim_abi.h "$out"/
make -s -C "$ksrc" M="$(cd "$out" && pwd)" modules
ls "$out"/tmem_shim.ko
