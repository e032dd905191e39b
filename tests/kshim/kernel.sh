#!/usr/bin/env bash
# Builds (once, then cached) the lab's Linux 5.10 kernel with CONFIG_CLEANCACHE=y.
#
# Everything comes from Debian packages: the build tools and QEMU from the system's suite,
# linux-source-5.10 from Debian's bullseye suite through a private apt configuration under the
# cache directory (the system's apt sources are never touched).
#
# usage: tests/kshim/kernel.sh            prints the kernel tree's path when it is built
# env:   TMEM_KLAB_DIR (default /var/cache/tmem-kernlab), JOBS (default nproc)
#
# Its standard output is the path and nothing else (callers capture it): every other line, the
# kernel's own configuration and build output included, goes to standard error.
set -euo pipefail
exec 3>&1 1>&2
KLAB=${TMEM_KLAB_DIR:-/var/cache/tmem-kernlab}
JOBS=${JOBS:-$(nproc)}
KSRC=$KLAB/linux-source-5.10
APTB=$KLAB/apt
APTO=(-o "Dir::Etc::sourcelist=$APTB/bullseye.sources" -o "Dir::Etc::sourceparts=-"
      -o "Dir::State::Lists=$APTB/lists" -o "Dir::Cache::archives=$APTB/archives")
mkdir -p "$KLAB"
log() { echo "kernel.sh: $*" >&2; }

# Options on top of tinyconfig; every one must end up =y (checked below).
#  64BIT: tinyconfig on x86 is 32-bit.  SLUB + COMPACTION + MIGRATION: with SLOB, 9p's order-6
#  message buffers fail under memory pressure.  HW_RANDOM_VIRTIO: crng ready in ~2 s, not ~40 s.
ENABLE="64BIT PRINTK PRINTK_TIME EARLY_PRINTK BUG KALLSYMS MAGIC_SYSRQ
 TTY UNIX98_PTYS SERIAL_8250 SERIAL_8250_CONSOLE
 PCI VIRTIO_MENU VIRTIO_PCI VIRTIO_BLK VIRTIO_CONSOLE HW_RANDOM HW_RANDOM_VIRTIO
 HYPERVISOR_GUEST PARAVIRT ACPI
 BLOCK BLK_DEV BLK_DEV_LOOP BLK_DEV_NBD EXT4_FS EXT4_FS_POSIX_ACL
 PROC_FS PROC_SYSCTL SYSFS DEVTMPFS DEVTMPFS_MOUNT TMPFS SHMEM DEBUG_FS
 NET NET_9P NET_9P_VIRTIO 9P_FS 9P_FS_POSIX_ACL UNIX INET
 SWAP CLEANCACHE MODULES MODULE_UNLOAD BINFMT_ELF BINFMT_SCRIPT
 MULTIUSER FUTEX EPOLL SIGNALFD TIMERFD EVENTFD AIO FHANDLE POSIX_TIMERS FILE_LOCKING INOTIFY_USER
 ADVISE_SYSCALLS MEMBARRIER RSEQ SYSVIPC POSIX_MQUEUE HIGH_RES_TIMERS SYSCTL SMP
 SLUB COMPACTION MIGRATION CC_OPTIMIZE_FOR_PERFORMANCE BASE_FULL VM_EVENT_COUNTERS KERNEL_GZIP"
DISABLE="SLOB CC_OPTIMIZE_FOR_SIZE KERNEL_XZ IPV6"

deps() {
  local need=() p
  for p in qemu-system-x86 build-essential bc bison flex libelf-dev libssl-dev e2fsprogs xz-utils \
           cpio kmod busybox-static nbd-client debian-archive-keyring; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --no-upgrade "${need[@]}" >&2
  fi
}

fetch() {
  [ -f "$KSRC/Makefile" ] && return 0
  mkdir -p "$APTB/lists/partial" "$APTB/archives/partial"
  cat > "$APTB/bullseye.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  ls "$APTB"/lists/*bullseye*Packages* >/dev/null 2>&1 || apt-get "${APTO[@]}" -q update >&2
  (cd "$KLAB" && ls linux-source-5.10_*_all.deb >/dev/null 2>&1 || apt-get "${APTO[@]}" -q download linux-source-5.10 >&2)
  rm -rf "$KLAB/pkg"
  dpkg-deb -x "$(ls "$KLAB"/linux-source-5.10_*_all.deb | tail -1)" "$KLAB/pkg"
  tar -C "$KLAB" -xf "$KLAB/pkg/usr/src/linux-source-5.10.tar.xz"
  rm -rf "$KLAB/pkg"
}

config() {
  cd "$KSRC"
  [ -f .config.lab-done ] && return 0
  make -s tinyconfig
  local args=() o bad=0
  for o in $ENABLE; do args+=(--enable "$o"); done
  for o in $DISABLE; do args+=(--disable "$o"); done
  scripts/config "${args[@]}"
  make -s olddefconfig
  for o in $ENABLE; do grep -q "^CONFIG_$o=y" .config || { log "missing CONFIG_$o"; bad=1; }; done
  for o in $DISABLE; do grep -q "^CONFIG_$o=y" .config && { log "still set CONFIG_$o"; bad=1; }; done
  ((bad == 0)) || { log "kernel config incomplete"; exit 1; }
  touch .config.lab-done
}

build() {
  cd "$KSRC"
  [ -f arch/x86/boot/bzImage ] && [ -f Module.symvers ] && [ .build.lab-done -nt .config ] && return 0
  log "building Linux $(make -s kernelversion) (a few minutes on 2 cores)"
  make -s -j"$JOBS" bzImage modules_prepare >&2
  make -s -j"$JOBS" modules >&2        # no in-tree modules; writes Module.symvers for ours
  touch .build.lab-done
}

deps
fetch
config
build
echo "$KSRC" >&3
