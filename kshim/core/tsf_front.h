/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The module's side of the shim as plain C: pools, tags, the record of invalidations made
 * while no relay is attached, and what every cleancache call, attach, detach and response
 * does to them. tmem_shim.ko wraps it in a spinlock; the userspace tests and the fake device
 * wrap it in a mutex. No function here sleeps or allocates; the caller holds its lock around
 * every call.
 *
 * Contracts (DESIGN.md, "Kernel shim"):
 *  - A put is queued or dropped (counted); it never waits.
 *  - A get is queued or misses at once; the caller waits for its answer with a timeout, and a
 *    tag whose caller gave up is not reused until its answer (or a detach) comes, so a late
 *    answer can never land in another request's slot.
 *  - Invalidations are never dropped: one that cannot be queued is recorded; when the record is
 *    full, the pool is marked for a whole flush instead. A pool with recorded invalidations or a
 *    whole flush outstanding misses every get until they are queued (the relay runs requests
 *    in order, so anything queued after them is safe).
 *  - An invalidation the relay only deferred, or that was still outstanding when the relay went
 *    away, turns into a whole-pool flush before that pool serves a get again.
 *  - Pools live in the module: a filesystem mounted while no relay is attached gets a pool id at
 *    once; every attach announces every pool (INIT_FS with its UUID) before anything else of it.
 */
#ifndef TSF_FRONT_H_
#define TSF_FRONT_H_

#include "tsf_port.h"
#include "tsf_ring.h"

#ifdef __cplusplus
extern "C" {
#endif

enum tsf_tag_state { TSF_TAG_FREE = 0, TSF_TAG_QUEUED = 1, TSF_TAG_HELD = 2 };
enum tsf_flush { TSF_FLUSH_NONE = 0, TSF_FLUSH_NEEDED = 1, TSF_FLUSH_QUEUED = 2 };

struct tsf_tag {
	struct tmem_shim_req req; /* what was queued under this tag */
	tsf_u8 state;             /* enum tsf_tag_state */
	tsf_u8 abandoned;         /* a get whose caller timed out */
	tsf_u8 done;              /* a get's answer is in (HELD) */
	tsf_s32 result;           /* a get's answer: TMEM_SHIM_HIT or TMEM_SHIM_MISS */
};

struct tsf_pool {
	tsf_u8 in_use;
	tsf_u8 shared;
	tsf_u8 announced;       /* INIT queued to the relay attached now */
	tsf_u8 flush;           /* enum tsf_flush */
	tsf_u8 flush_at_detach; /* the relay deferred an invalidation: flush whole if it goes */
	tsf_u8 dying;           /* unmounted; kept until the relay has been told */
	tsf_u8 uuid[TMEM_SHIM_UUID_BYTES];
	tsf_u32 page_bytes;
	tsf_u32 recorded;       /* entries of this pool in the record */
	tsf_u64 flush_seq;      /* seq of the queued FLUSH_POOL */
};

struct tsf_rec {
	tsf_u32 pool;
	tsf_u32 op; /* TMEM_SHIM_OP_INVALIDATE_PAGE or _INODE */
	tsf_u64 index;
	tsf_u8 key[TMEM_SHIM_KEY_BYTES];
};

struct tsf_counters {
	tsf_u64 attaches, detaches;
	tsf_u64 pools_created, pools_refused;
	tsf_u64 puts, puts_queued, puts_dropped_full, puts_dropped_detached;
	tsf_u64 gets, gets_queued, get_hits, get_misses, get_timeouts, gets_missed_unready;
	tsf_u64 gets_waited_for_slot, gets_filtered, filter_resets;
	tsf_u64 invalidations, invalidations_queued, invalidations_recorded, invalidations_deferred;
	tsf_u64 pool_flushes_needed, pool_flushes_queued, pool_flushes_done;
	tsf_u64 responses, bad_responses, ring_errors;
};

struct tsf_front {
	struct tsr_side ring;
	tsf_u32 page_bytes;
	int attached;
	tsf_u64 generation;
	tsf_u64 next_seq;
	struct tsf_tag *tags;   /* nr_slots */
	tsf_u32 *free_tags;     /* stack of free tags, nr_slots */
	tsf_u32 nr_free;
	struct tsf_pool pools[TMEM_SHIM_MAX_POOLS];
	struct tsf_rec *rec;    /* rec_cap */
	tsf_u32 rec_cap, rec_len;
	/* The put filter: one bit per hash of (pool, key, index), set when a put is queued. A get
	 * whose bit is clear was never put (since the last reset) and misses without a round trip.
	 * Bits are never cleared one by one (an invalidated page only costs a remote miss); the
	 * whole filter is cleared when half its bits are set, which can only turn hits into misses. */
	tsf_u64 *filter;        /* filter_mask + 1 bits, or NULL: every get goes to the relay */
	tsf_u64 filter_mask;
	tsf_u64 filter_set;
	struct tsf_counters c;
};

/* Sets up `f` over a zeroed shared area of TMEM_SHIM_MAP_BYTES(nr_slots, page_bytes) bytes
 * with caller-provided arrays (tags and free_tags: nr_slots entries; rec: rec_cap entries).
 * nr_slots must be a power of two in [TMEM_SHIM_MIN_SLOTS, TMEM_SHIM_MAX_SLOTS].
 * Returns 0, or -1 for bad sizes. Starts detached. */
int tsf_init(struct tsf_front *f, void *area, tsf_u32 nr_slots, tsf_u32 page_bytes,
	     struct tsf_tag *tags, tsf_u32 *free_tags, struct tsf_rec *rec, tsf_u32 rec_cap);

/* Gives `f` a put filter of 2^bits_log2 bits in `words` (2^bits_log2 / 64 zeroed words),
 * bits_log2 in [10, 32]. Returns 0, or -1 for a bad size. */
int tsf_set_filter(struct tsf_front *f, tsf_u64 *words, tsf_u32 bits_log2);

/* cleancache calls. Pool ids are this module's, [0, TMEM_SHIM_MAX_POOLS). A return of
 * 1 from the queueing calls means a request was queued (wake the relay). */
int tsf_init_fs(struct tsf_front *f, int shared, const tsf_u8 uuid[TMEM_SHIM_UUID_BYTES],
		tsf_u32 page_bytes, int *queued);
int tsf_put(struct tsf_front *f, int pool, const tsf_u8 key[TMEM_SHIM_KEY_BYTES], tsf_u64 index,
	    const void *page);
/* Returns the tag to wait on; -1 for an immediate miss (no relay, or the pool owes it an
 * invalidation or a flush); -2 when every slot is taken: the caller may wait for an answer to
 * free one (tsf_free_slots) within its timeout and call again, or call it a miss with
 * tsf_get_missed. */
int tsf_get_begin(struct tsf_front *f, int pool, const tsf_u8 key[TMEM_SHIM_KEY_BYTES],
		  tsf_u64 index, int *queued);
void tsf_get_missed(struct tsf_front *f);
tsf_u32 tsf_free_slots(const struct tsf_front *f);
/* True once the get's answer is in (may be read without the lock, as a wake-up condition). */
int tsf_get_done(const struct tsf_front *f, int tag);
/* Ends a get: 0 with the page copied to `page_out` on a hit, -1 on a miss or when the answer
 * is not in yet (then the tag is abandoned and freed when its answer or a detach comes).
 * *queued: the freed slot let something owed be queued (wake the relay). */
int tsf_get_end(struct tsf_front *f, int tag, void *page_out, int *queued);
int tsf_invalidate_page(struct tsf_front *f, int pool, const tsf_u8 key[TMEM_SHIM_KEY_BYTES],
			tsf_u64 index);
int tsf_invalidate_inode(struct tsf_front *f, int pool, const tsf_u8 key[TMEM_SHIM_KEY_BYTES]);
int tsf_invalidate_fs(struct tsf_front *f, int pool);

/* A relay attached: new generation, empty rings, every pool announced, then outstanding
 * flushes and recorded invalidations queued (as far as tags allow). Returns 1 if anything
 * was queued. */
int tsf_attach(struct tsf_front *f);
/* The relay went away: gets waiting miss, undelivered invalidations are recorded again. */
void tsf_detach(struct tsf_front *f);
/* Reads every response the relay published. Returns how many were read, or -1 when the
 * relay wrote impossible ring indices (the caller should make it detach). *queued as above. */
int tsf_consume(struct tsf_front *f, int *queued);
/* Requests queued and not yet taken by the relay. */
tsf_u32 tsf_pending(const struct tsf_front *f);

/* What the module reports (debugfs `stats`, one "name value" line each, exported by the relay
 * as tmem_shim_<name>): a copy taken under the module's lock, then printed without it. */
struct tsf_stats {
	tsf_u64 attached, enabled, pools, recorded, free_slots, slots;
	struct tsf_counters c;
};
void tsf_snapshot(const struct tsf_front *f, int enabled, struct tsf_stats *out);
/* Calls emit(ctx, name, value, is_gauge) for every value, in a fixed order. Gauges are states
 * (attached, pools, ...); the rest count events since the module loaded. */
void tsf_stats_each(const struct tsf_stats *s,
		    void (*emit)(void *ctx, const char *name, tsf_u64 value, int is_gauge), void *ctx);
/* 1 when `name` is one of the gauges above, 0 otherwise. */
int tsf_stat_is_gauge(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* TSF_FRONT_H_ */
