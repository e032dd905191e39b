// SPDX-License-Identifier: GPL-2.0 OR MIT
#include "tsf_front.h"

int tsf_init(struct tsf_front *f, void *area, tsf_u32 nr_slots, tsf_u32 page_bytes,
	     struct tsf_tag *tags, tsf_u32 *free_tags, struct tsf_rec *rec, tsf_u32 rec_cap)
{
	tsf_u32 i;

	if (nr_slots < TMEM_SHIM_MIN_SLOTS || nr_slots > TMEM_SHIM_MAX_SLOTS ||
	    (nr_slots & (nr_slots - 1)) != 0 || page_bytes < 512 || page_bytes > 65536 ||
	    (page_bytes & (page_bytes - 1)) != 0 || rec_cap == 0)
		return -1;
	memset(f, 0, sizeof(*f));
	f->ring.area = area;
	f->ring.nr_slots = nr_slots;
	f->page_bytes = page_bytes;
	f->tags = tags;
	f->free_tags = free_tags;
	f->rec = rec;
	f->rec_cap = rec_cap;
	memset(tags, 0, sizeof(*tags) * nr_slots);
	for (i = 0; i < nr_slots; i++)
		free_tags[i] = nr_slots - 1 - i;
	f->nr_free = nr_slots;
	tsr_init_header(area, nr_slots, page_bytes, 0);
	return 0;
}

int tsf_set_filter(struct tsf_front *f, tsf_u64 *words, tsf_u32 bits_log2)
{
	if (bits_log2 < 10 || bits_log2 > 32)
		return -1;
	f->filter = words;
	f->filter_mask = ((tsf_u64)1 << bits_log2) - 1;
	f->filter_set = 0;
	memset(words, 0, ((tsf_u64)1 << bits_log2) / 8);
	return 0;
}

/* FNV-1a over (pool, key, index), then a final mix so that nearby indices spread. */
static tsf_u64 filter_hash(int pool, const tsf_u8 *key, tsf_u64 index)
{
	tsf_u64 h = 0xcbf29ce484222325ULL;
	int i;

	h = (h ^ (tsf_u32)pool) * 0x100000001b3ULL;
	for (i = 0; i < TMEM_SHIM_KEY_BYTES; i++)
		h = (h ^ key[i]) * 0x100000001b3ULL;
	h ^= index * 0x9e3779b97f4a7c15ULL;
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 29;
	return h;
}

static void filter_add(struct tsf_front *f, int pool, const tsf_u8 *key, tsf_u64 index)
{
	tsf_u64 bit, *w;

	if (!f->filter)
		return;
	if (f->filter_set > f->filter_mask / 2) {
		memset(f->filter, 0, (f->filter_mask + 1) / 8);
		f->filter_set = 0;
		f->c.filter_resets++;
	}
	bit = filter_hash(pool, key, index) & f->filter_mask;
	w = &f->filter[bit / 64];
	if (!(*w & ((tsf_u64)1 << (bit % 64)))) {
		*w |= (tsf_u64)1 << (bit % 64);
		f->filter_set++;
	}
}

static int filter_may_have(const struct tsf_front *f, int pool, const tsf_u8 *key, tsf_u64 index)
{
	tsf_u64 bit;

	if (!f->filter)
		return 1;
	bit = filter_hash(pool, key, index) & f->filter_mask;
	return (f->filter[bit / 64] >> (bit % 64)) & 1;
}

static int pool_ok(const struct tsf_front *f, int pool)
{
	return pool >= 0 && pool < TMEM_SHIM_MAX_POOLS && f->pools[pool].in_use;
}

static void free_tag(struct tsf_front *f, tsf_u32 tag)
{
	struct tsf_tag *t = &f->tags[tag];

	t->state = TSF_TAG_FREE;
	t->abandoned = 0;
	t->done = 0;
	f->free_tags[f->nr_free++] = tag;
}

/* Queues one request under a fresh tag, with `page` (if any) copied into the tag's slot before
 * the request is published; returns the tag, or -1 when none is free. */
static int queue_page(struct tsf_front *f, tsf_u32 op, int pool, tsf_u32 page_bytes,
		      const tsf_u8 *key, tsf_u32 key_bytes, tsf_u64 index, const void *page)
{
	struct tsf_tag *t;
	tsf_u32 tag;

	if (!f->attached || f->nr_free == 0)
		return -1;
	tag = f->free_tags[--f->nr_free];
	t = &f->tags[tag];
	memset(&t->req, 0, sizeof(t->req));
	t->req.seq = f->next_seq++;
	t->req.op = op;
	t->req.tag = tag;
	t->req.pool = (tsf_u32)pool;
	t->req.page_bytes = page_bytes;
	t->req.index = index;
	if (key)
		memcpy(t->req.key, key, key_bytes);
	t->state = TSF_TAG_QUEUED;
	t->abandoned = 0;
	t->done = 0;
	t->result = TMEM_SHIM_MISS;
	if (page)
		memcpy(tsr_slot(f->ring.area, f->ring.nr_slots, f->page_bytes, tag), page, f->page_bytes);
	/* Cannot fail: at most nr_slots tags are outstanding and a tag is only freed after its
	 * response was read, so the request ring always has room. */
	if (tsr_req_push(&f->ring, &t->req) != 0) {
		free_tag(f, tag);
		f->c.ring_errors++;
		return -1;
	}
	return (int)tag;
}

static int queue(struct tsf_front *f, tsf_u32 op, int pool, tsf_u32 page_bytes,
		 const tsf_u8 *key, tsf_u32 key_bytes, tsf_u64 index)
{
	return queue_page(f, op, pool, page_bytes, key, key_bytes, index, NULL);
}

static void drop_records_of(struct tsf_front *f, int pool)
{
	tsf_u32 i = 0;

	while (i < f->rec_len) {
		if (f->rec[i].pool == (tsf_u32)pool)
			f->rec[i] = f->rec[--f->rec_len];
		else
			i++;
	}
	f->pools[pool].recorded = 0;
}

/* The pool must lose every page before it serves a get again. */
static void need_flush(struct tsf_front *f, int pool)
{
	struct tsf_pool *p = &f->pools[pool];

	if (p->flush != TSF_FLUSH_NEEDED)
		f->c.pool_flushes_needed++;
	p->flush = TSF_FLUSH_NEEDED;
	p->flush_at_detach = 0;
	drop_records_of(f, pool); /* the flush covers them */
}

static void record(struct tsf_front *f, int pool, tsf_u32 op, const tsf_u8 *key, tsf_u64 index)
{
	struct tsf_pool *p = &f->pools[pool];
	struct tsf_rec *r;

	if (p->flush == TSF_FLUSH_NEEDED || p->dying)
		return; /* a whole flush or the pool's release is due anyway */
	if (f->rec_len == f->rec_cap) {
		need_flush(f, pool);
		return;
	}
	r = &f->rec[f->rec_len++];
	r->pool = (tsf_u32)pool;
	r->op = op;
	r->index = index;
	memcpy(r->key, key, TMEM_SHIM_KEY_BYTES);
	p->recorded++;
	f->c.invalidations_recorded++;
}

/* Queues what is owed to the relay, in order: pool announcements, whole flushes, releases
 * of unmounted pools, recorded invalidations. Stops when tags run out. */
static int queue_owed(struct tsf_front *f)
{
	int any = 0, i, tag;
	tsf_u32 r;

	if (!f->attached)
		return 0;
	for (i = 0; i < TMEM_SHIM_MAX_POOLS; i++) {
		struct tsf_pool *p = &f->pools[i];

		if (!p->in_use || p->announced)
			continue;
		tag = queue(f, p->shared ? TMEM_SHIM_OP_INIT_SHARED_FS : TMEM_SHIM_OP_INIT_FS, i,
			    p->page_bytes, p->uuid, TMEM_SHIM_UUID_BYTES, 0);
		if (tag < 0)
			return any;
		p->announced = 1;
		any = 1;
	}
	for (i = 0; i < TMEM_SHIM_MAX_POOLS; i++) {
		struct tsf_pool *p = &f->pools[i];

		if (!p->in_use || p->dying || p->flush != TSF_FLUSH_NEEDED)
			continue;
		tag = queue(f, TMEM_SHIM_OP_FLUSH_POOL, i, p->page_bytes, NULL, 0, 0);
		if (tag < 0)
			return any;
		p->flush = TSF_FLUSH_QUEUED;
		p->flush_seq = f->tags[tag].req.seq;
		f->c.pool_flushes_queued++;
		any = 1;
	}
	for (i = 0; i < TMEM_SHIM_MAX_POOLS; i++) {
		struct tsf_pool *p = &f->pools[i];

		if (!p->in_use || !p->dying)
			continue;
		tag = queue(f, TMEM_SHIM_OP_INVALIDATE_FS, i, p->page_bytes, p->uuid,
			    TMEM_SHIM_UUID_BYTES, 0);
		if (tag < 0)
			return any;
		memset(p, 0, sizeof(*p));
		any = 1;
	}
	r = 0;
	while (r < f->rec_len) {
		struct tsf_rec *e = &f->rec[r];

		tag = queue(f, e->op, (int)e->pool, f->page_bytes, e->key, TMEM_SHIM_KEY_BYTES, e->index);
		if (tag < 0)
			return any;
		f->pools[e->pool].recorded--;
		f->c.invalidations_queued++;
		*e = f->rec[--f->rec_len];
		any = 1;
	}
	return any;
}

int tsf_init_fs(struct tsf_front *f, int shared, const tsf_u8 uuid[TMEM_SHIM_UUID_BYTES],
		tsf_u32 page_bytes, int *queued)
{
	int i;

	*queued = 0;
	if (page_bytes != f->page_bytes) {
		f->c.pools_refused++;
		return -1;
	}
	for (i = 0; i < TMEM_SHIM_MAX_POOLS; i++) {
		struct tsf_pool *p = &f->pools[i];

		if (p->in_use)
			continue;
		memset(p, 0, sizeof(*p));
		p->in_use = 1;
		p->shared = shared ? 1 : 0;
		memcpy(p->uuid, uuid, TMEM_SHIM_UUID_BYTES);
		p->page_bytes = page_bytes;
		f->c.pools_created++;
		*queued = queue_owed(f);
		return i;
	}
	f->c.pools_refused++;
	return -1;
}

/* Puts and gets go to the relay only for a pool it knows and that owes it nothing. */
static int pool_ready(const struct tsf_front *f, int pool)
{
	const struct tsf_pool *p = &f->pools[pool];

	return f->attached && p->announced && !p->dying && p->flush != TSF_FLUSH_NEEDED &&
	       p->recorded == 0;
}

int tsf_put(struct tsf_front *f, int pool, const tsf_u8 key[TMEM_SHIM_KEY_BYTES], tsf_u64 index,
	    const void *page)
{
	int tag;

	if (!pool_ok(f, pool))
		return 0;
	f->c.puts++;
	if (!pool_ready(f, pool)) {
		f->c.puts_dropped_detached++;
		return 0;
	}
	tag = queue_page(f, TMEM_SHIM_OP_PUT, pool, f->page_bytes, key, TMEM_SHIM_KEY_BYTES, index,
			 page);
	if (tag < 0) {
		f->c.puts_dropped_full++;
		return 0;
	}
	f->c.puts_queued++;
	filter_add(f, pool, key, index);
	return 1;
}

int tsf_get_begin(struct tsf_front *f, int pool, const tsf_u8 key[TMEM_SHIM_KEY_BYTES],
		  tsf_u64 index, int *queued)
{
	int tag;

	*queued = 0;
	if (!pool_ok(f, pool))
		return -1;
	f->c.gets++;
	if (!pool_ready(f, pool)) {
		f->c.gets_missed_unready++;
		f->c.get_misses++;
		return -1;
	}
	if (!filter_may_have(f, pool, key, index)) {
		f->c.gets_filtered++;
		f->c.get_misses++;
		return -1;
	}
	tag = queue(f, TMEM_SHIM_OP_GET, pool, f->page_bytes, key, TMEM_SHIM_KEY_BYTES, index);
	if (tag < 0) {
		f->c.gets_waited_for_slot++;
		f->c.gets--; /* counted again when the caller retries */
		return -2;
	}
	f->c.gets_queued++;
	*queued = 1;
	return tag;
}

void tsf_get_missed(struct tsf_front *f)
{
	f->c.gets++;
	f->c.get_timeouts++;
	f->c.get_misses++;
}

tsf_u32 tsf_free_slots(const struct tsf_front *f)
{
	return tsf_read_once(f->nr_free);
}

int tsf_get_done(const struct tsf_front *f, int tag)
{
	return tsf_read_once(f->tags[tag].done);
}

int tsf_get_end(struct tsf_front *f, int tag, void *page_out, int *queued)
{
	struct tsf_tag *t = &f->tags[tag];
	int hit;

	*queued = 0;
	if (!t->done) {
		t->abandoned = 1;
		f->c.get_timeouts++;
		f->c.get_misses++;
		return -1;
	}
	hit = t->result == TMEM_SHIM_HIT;
	if (hit)
		memcpy(page_out, tsr_slot(f->ring.area, f->ring.nr_slots, f->page_bytes, (tsf_u32)tag),
		       f->page_bytes);
	free_tag(f, (tsf_u32)tag);
	if (hit)
		f->c.get_hits++;
	else
		f->c.get_misses++;
	/* The freed slot may be what a recorded invalidation was waiting for. */
	*queued = queue_owed(f);
	return hit ? 0 : -1;
}

static int invalidate(struct tsf_front *f, int pool, tsf_u32 op, const tsf_u8 *key, tsf_u64 index)
{
	struct tsf_pool *p;

	if (!pool_ok(f, pool))
		return 0;
	p = &f->pools[pool];
	f->c.invalidations++;
	if (p->flush == TSF_FLUSH_NEEDED || p->dying)
		return 0;
	/* Behind recorded ones, so that the relay sees a pool's invalidations in order. */
	if (f->attached && p->announced && p->recorded == 0 &&
	    queue(f, op, pool, f->page_bytes, key, TMEM_SHIM_KEY_BYTES, index) >= 0) {
		f->c.invalidations_queued++;
		return 1;
	}
	record(f, pool, op, key, index);
	return queue_owed(f);
}

int tsf_invalidate_page(struct tsf_front *f, int pool, const tsf_u8 key[TMEM_SHIM_KEY_BYTES],
			tsf_u64 index)
{
	return invalidate(f, pool, TMEM_SHIM_OP_INVALIDATE_PAGE, key, index);
}

int tsf_invalidate_inode(struct tsf_front *f, int pool, const tsf_u8 key[TMEM_SHIM_KEY_BYTES])
{
	return invalidate(f, pool, TMEM_SHIM_OP_INVALIDATE_INODE, key, 0);
}

int tsf_invalidate_fs(struct tsf_front *f, int pool)
{
	struct tsf_pool *p;

	if (!pool_ok(f, pool))
		return 0;
	p = &f->pools[pool];
	if (p->dying)
		return 0;
	f->c.invalidations++;
	drop_records_of(f, pool);
	p->dying = 1;
	p->flush = TSF_FLUSH_NONE;
	return queue_owed(f);
}

int tsf_attach(struct tsf_front *f)
{
	int i;

	f->generation++;
	tsr_init_header(f->ring.area, f->ring.nr_slots, f->page_bytes, f->generation);
	f->ring.req_own = 0;
	f->ring.resp_own = 0;
	f->next_seq = 1;
	f->attached = 1;
	f->c.attaches++;
	for (i = 0; i < TMEM_SHIM_MAX_POOLS; i++)
		f->pools[i].announced = 0;
	return queue_owed(f);
}

void tsf_detach(struct tsf_front *f)
{
	tsf_u32 tag;
	int i;

	if (!f->attached)
		return;
	f->attached = 0;
	f->c.detaches++;
	for (tag = 0; tag < f->ring.nr_slots; tag++) {
		struct tsf_tag *t = &f->tags[tag];
		int pool = (int)t->req.pool;

		if (t->state != TSF_TAG_QUEUED)
			continue;
		switch (t->req.op) {
		case TMEM_SHIM_OP_GET:
			if (t->abandoned) {
				free_tag(f, tag);
			} else {
				t->done = 1;
				t->result = TMEM_SHIM_MISS;
				t->state = TSF_TAG_HELD;
			}
			continue;
		case TMEM_SHIM_OP_INVALIDATE_PAGE:
		case TMEM_SHIM_OP_INVALIDATE_INODE:
			if (pool_ok(f, pool))
				record(f, pool, t->req.op, t->req.key, t->req.index);
			break;
		case TMEM_SHIM_OP_FLUSH_POOL:
			if (pool_ok(f, pool) && f->pools[pool].flush == TSF_FLUSH_QUEUED &&
			    f->pools[pool].flush_seq == t->req.seq)
				need_flush(f, pool);
			break;
		default:
			break;
		}
		free_tag(f, tag);
	}
	for (i = 0; i < TMEM_SHIM_MAX_POOLS; i++) {
		struct tsf_pool *p = &f->pools[i];

		if (!p->in_use)
			continue;
		p->announced = 0;
		if (p->flush_at_detach && !p->dying)
			need_flush(f, i);
	}
}

static void answer(struct tsf_front *f, const struct tmem_shim_resp *r)
{
	struct tsf_tag *t;
	int pool;

	if (r->tag >= f->ring.nr_slots || f->tags[r->tag].state != TSF_TAG_QUEUED ||
	    f->tags[r->tag].req.seq != r->seq) {
		f->c.bad_responses++;
		return;
	}
	t = &f->tags[r->tag];
	pool = (int)t->req.pool;
	switch (t->req.op) {
	case TMEM_SHIM_OP_GET:
		if (!t->abandoned) {
			t->result = r->result == TMEM_SHIM_HIT ? TMEM_SHIM_HIT : TMEM_SHIM_MISS;
			t->state = TSF_TAG_HELD;
			tsf_store_release(&t->done, 1);
			return;
		}
		break;
	case TMEM_SHIM_OP_INVALIDATE_PAGE:
	case TMEM_SHIM_OP_INVALIDATE_INODE:
		if (!pool_ok(f, pool) || f->pools[pool].dying)
			break;
		if (r->result == TMEM_SHIM_DEFERRED) {
			f->c.invalidations_deferred++;
			f->pools[pool].flush_at_detach = 1;
		} else if (r->result != TMEM_SHIM_OK) {
			need_flush(f, pool);
		}
		break;
	case TMEM_SHIM_OP_FLUSH_POOL:
		if (!pool_ok(f, pool) || f->pools[pool].flush != TSF_FLUSH_QUEUED ||
		    f->pools[pool].flush_seq != t->req.seq)
			break;
		if (r->result == TMEM_SHIM_OK || r->result == TMEM_SHIM_DEFERRED) {
			f->pools[pool].flush = TSF_FLUSH_NONE;
			f->pools[pool].flush_at_detach = r->result == TMEM_SHIM_DEFERRED;
			f->c.pool_flushes_done++;
		} else {
			need_flush(f, pool);
		}
		break;
	default:
		break;
	}
	free_tag(f, r->tag);
}

int tsf_consume(struct tsf_front *f, int *queued)
{
	struct tmem_shim_resp r;
	int n = 0, rc;

	*queued = 0;
	if (!f->attached)
		return 0;
	while ((rc = tsr_resp_pop(&f->ring, &r)) == 1) {
		f->c.responses++;
		answer(f, &r);
		n++;
	}
	*queued = queue_owed(f);
	if (rc < 0) {
		f->c.ring_errors++;
		return -1;
	}
	return n;
}

tsf_u32 tsf_pending(const struct tsf_front *f)
{
	return f->attached ? tsr_req_pending(&f->ring) : 0;
}

void tsf_snapshot(const struct tsf_front *f, int enabled, struct tsf_stats *out)
{
	tsf_u32 i;

	out->attached = f->attached ? 1 : 0;
	out->enabled = enabled ? 1 : 0;
	out->pools = 0;
	for (i = 0; i < TMEM_SHIM_MAX_POOLS; i++)
		out->pools += f->pools[i].in_use ? 1 : 0;
	out->recorded = f->rec_len;
	out->free_slots = f->nr_free;
	out->slots = f->ring.nr_slots;
	out->c = f->c;
}

static const char *const tsf_gauges[] = {
	"attached", "enabled", "pools", "recorded", "free_slots", "slots",
};

int tsf_stat_is_gauge(const char *name)
{
	tsf_u32 i, j;

	for (i = 0; i < sizeof(tsf_gauges) / sizeof(tsf_gauges[0]); i++) {
		for (j = 0; tsf_gauges[i][j] != 0 && tsf_gauges[i][j] == name[j]; j++)
			;
		if (tsf_gauges[i][j] == 0 && name[j] == 0)
			return 1;
	}
	return 0;
}

void tsf_stats_each(const struct tsf_stats *s,
		    void (*emit)(void *ctx, const char *name, tsf_u64 value, int is_gauge), void *ctx)
{
#define G(name) emit(ctx, #name, s->name, 1)
#define C(name) emit(ctx, #name, s->c.name, 0)
	G(attached); G(enabled); G(pools); G(recorded); G(free_slots); G(slots);
	C(attaches); C(detaches); C(pools_created); C(pools_refused);
	C(puts); C(puts_queued); C(puts_dropped_full); C(puts_dropped_detached);
	C(gets); C(gets_queued); C(get_hits); C(get_misses); C(get_timeouts); C(gets_missed_unready);
	C(gets_waited_for_slot); C(gets_filtered); C(filter_resets);
	C(invalidations); C(invalidations_queued); C(invalidations_recorded);
	C(invalidations_deferred); C(pool_flushes_needed); C(pool_flushes_queued);
	C(pool_flushes_done); C(responses); C(bad_responses); C(ring_errors);
#undef G
#undef C
}
