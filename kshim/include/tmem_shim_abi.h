/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The ring ABI between tmem_shim.ko and tmem-shimd (the relay).
 *
 * The module owns one shared area (vmalloc'ed at load, mapped by the relay with mmap on
 * /dev/tmem_shim). Its layout, all offsets from the start of the mapping:
 *
 *   0                      struct tmem_shim_header (one page): identity, sizes, ring indices
 *   req_offset             nr_slots x struct tmem_shim_req   (module -> relay)
 *   resp_offset            nr_slots x struct tmem_shim_resp  (relay -> module)
 *   slots_offset           nr_slots x page_bytes page slots, page aligned
 *
 * Every request carries a tag in [0, nr_slots): the tag names the request's response and, for
 * a put or a get, its page slot. A tag stays owned by the relay from the request until the
 * module has read its response, so at most nr_slots requests are outstanding and neither ring
 * can overflow. The module never trusts what the relay writes: a response whose tag or
 * sequence number does not match an outstanding request is counted and ignored.
 *
 * Rings are single-producer/single-consumer with free-running 32-bit indices (index & (n-1)
 * names the entry). The producer writes the entry, then publishes head with release order;
 * the consumer reads head with acquire order, the entries, then publishes tail with release.
 *
 * Attach: the relay opens /dev/tmem_shim (one opener at a time), calls TMEM_SHIM_IOC_ATTACH
 * with its ABI version (a mismatch fails with EPROTO), mmaps map_bytes, and checks the header.
 * It waits for requests with poll (POLLIN), answers them in the response ring and calls
 * TMEM_SHIM_IOC_KICK so that the module reads the responses. Closing the device detaches.
 */
#ifndef TMEM_SHIM_ABI_H_
#define TMEM_SHIM_ABI_H_

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/ioctl.h>
#else
#include <linux/types.h>
#include <sys/ioctl.h>
#endif

#define TMEM_SHIM_ABI_VERSION 1u
#define TMEM_SHIM_MAGIC 0x314d48534d454d54ULL /* "TMEMSHM1" little-endian */
#define TMEM_SHIM_DEVICE "/dev/tmem_shim"
#define TMEM_SHIM_KEY_BYTES 24 /* struct cleancache_filekey */
#define TMEM_SHIM_UUID_BYTES 16
#define TMEM_SHIM_MAX_POOLS 64 /* pools (mounted filesystems) the module tracks */
#define TMEM_SHIM_MIN_SLOTS 8
#define TMEM_SHIM_MAX_SLOTS 4096

enum tmem_shim_op {
	/* A pool exists (sent at init_fs, and for every pool again after an attach). key holds
	 * the pool's 16-byte UUID: the filesystem's for a shared pool, one chosen by the module
	 * for a private pool. The relay answers OK. */
	TMEM_SHIM_OP_INIT_FS = 1,
	TMEM_SHIM_OP_INIT_SHARED_FS = 2,
	/* Store the page in the tag's slot under (pool, key, index). Answer OK (stored or not). */
	TMEM_SHIM_OP_PUT = 3,
	/* Fetch (pool, key, index) into the tag's slot: answer TMEM_SHIM_HIT after filling the
	 * slot, or TMEM_SHIM_MISS. */
	TMEM_SHIM_OP_GET = 4,
	/* Invalidations: answer OK once delivered to tmemd, TMEM_SHIM_DEFERRED when the relay
	 * only recorded it for replay (the module then flushes the pool whole after a detach). */
	TMEM_SHIM_OP_INVALIDATE_PAGE = 5,
	TMEM_SHIM_OP_INVALIDATE_INODE = 6,
	/* The filesystem is gone (unmount): the relay releases the pool (a private one is
	 * destroyed in tmemd). */
	TMEM_SHIM_OP_INVALIDATE_FS = 7,
	/* Every page of the pool must go (an invalidation could not be kept); the pool stays. */
	TMEM_SHIM_OP_FLUSH_POOL = 8,
};

/* Results in struct tmem_shim_resp. */
#define TMEM_SHIM_OK 0
#define TMEM_SHIM_HIT 0
#define TMEM_SHIM_MISS 1
#define TMEM_SHIM_DEFERRED 2
/* Negative values: the request failed (treated as a miss / an undelivered invalidation). */

struct tmem_shim_req { /* 64 bytes */
	__u64 seq;        /* nonzero; increases by one per request within one attach */
	__u32 op;         /* enum tmem_shim_op */
	__u32 tag;        /* [0, nr_slots) */
	__u32 pool;       /* the module's pool id, [0, TMEM_SHIM_MAX_POOLS) */
	__u32 page_bytes; /* the pool's page size (init ops; PAGE_SIZE otherwise) */
	__u64 index;      /* page index in the file */
	__u8 key[TMEM_SHIM_KEY_BYTES]; /* file key, or the pool UUID in init ops */
	__u64 reserved;   /* zero */
};

struct tmem_shim_resp { /* 16 bytes */
	__u64 seq;    /* the request's seq */
	__u32 tag;    /* the request's tag */
	__s32 result; /* TMEM_SHIM_OK / HIT / MISS / DEFERRED, or negative */
};

struct tmem_shim_ring_idx {
	__u32 head; /* written by the producer */
	__u32 pad0[15];
	__u32 tail; /* written by the consumer */
	__u32 pad1[15];
};

struct tmem_shim_header {
	__u64 magic;        /* TMEM_SHIM_MAGIC */
	__u32 abi_version;  /* TMEM_SHIM_ABI_VERSION */
	__u32 nr_slots;     /* power of two, [TMEM_SHIM_MIN_SLOTS, TMEM_SHIM_MAX_SLOTS] */
	__u32 page_bytes;   /* size of one page slot */
	__u32 req_offset;
	__u32 resp_offset;
	__u32 slots_offset;
	__u64 map_bytes;    /* length to mmap */
	__u64 generation;   /* increases at every attach; seq numbers restart with it */
	__u32 pad[52];
	struct tmem_shim_ring_idx req;  /* module produces, relay consumes */
	struct tmem_shim_ring_idx resp; /* relay produces, module consumes */
};

struct tmem_shim_attach {
	__u32 abi_version; /* in: the relay's TMEM_SHIM_ABI_VERSION */
	__u32 nr_slots;    /* out */
	__u64 map_bytes;   /* out */
	__u64 generation;  /* out */
};

#define TMEM_SHIM_IOC_MAGIC 0xB7
#define TMEM_SHIM_IOC_ATTACH _IOWR(TMEM_SHIM_IOC_MAGIC, 1, struct tmem_shim_attach)
#define TMEM_SHIM_IOC_KICK _IO(TMEM_SHIM_IOC_MAGIC, 2)

/* Layout of the shared area for nr_slots slots of page_bytes each. */
#define TMEM_SHIM_HEADER_BYTES 4096u
#define TMEM_SHIM_ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define TMEM_SHIM_REQ_OFFSET TMEM_SHIM_HEADER_BYTES
#define TMEM_SHIM_RESP_OFFSET(n) (TMEM_SHIM_REQ_OFFSET + (n) * (__u32)sizeof(struct tmem_shim_req))
#define TMEM_SHIM_SLOTS_OFFSET(n, pb) \
	TMEM_SHIM_ALIGN_UP(TMEM_SHIM_RESP_OFFSET(n) + (n) * (__u32)sizeof(struct tmem_shim_resp), (pb))
#define TMEM_SHIM_MAP_BYTES(n, pb) ((__u64)TMEM_SHIM_SLOTS_OFFSET(n, pb) + (__u64)(n) * (pb))

#endif /* TMEM_SHIM_ABI_H_ */
