// SPDX-License-Identifier: GPL-2.0 OR MIT
#include "tsf_ring.h"

_Static_assert(sizeof(struct tmem_shim_req) == 64, "request entry is 64 bytes");
_Static_assert(sizeof(struct tmem_shim_resp) == 16, "response entry is 16 bytes");
_Static_assert(sizeof(struct tmem_shim_ring_idx) == 128, "ring indices take two cache lines");
_Static_assert(sizeof(struct tmem_shim_header) <= TMEM_SHIM_HEADER_BYTES, "header fits its page");

void tsr_init_header(void *area, tsf_u32 nr_slots, tsf_u32 page_bytes, tsf_u64 generation)
{
	struct tmem_shim_header *h = tsr_header(area);

	memset(h, 0, sizeof(*h));
	h->magic = TMEM_SHIM_MAGIC;
	h->abi_version = TMEM_SHIM_ABI_VERSION;
	h->nr_slots = nr_slots;
	h->page_bytes = page_bytes;
	h->req_offset = TMEM_SHIM_REQ_OFFSET;
	h->resp_offset = TMEM_SHIM_RESP_OFFSET(nr_slots);
	h->slots_offset = TMEM_SHIM_SLOTS_OFFSET(nr_slots, page_bytes);
	h->map_bytes = TMEM_SHIM_MAP_BYTES(nr_slots, page_bytes);
	h->generation = generation;
}

int tsr_check_header(const void *area, tsf_u64 mapped_bytes)
{
	const struct tmem_shim_header *h = (const struct tmem_shim_header *)area;
	tsf_u32 n = h->nr_slots;

	if (h->magic != TMEM_SHIM_MAGIC)
		return -1;
	if (h->abi_version != TMEM_SHIM_ABI_VERSION)
		return -2;
	if (n < TMEM_SHIM_MIN_SLOTS || n > TMEM_SHIM_MAX_SLOTS || (n & (n - 1)) != 0 ||
	    h->page_bytes < 512 || h->page_bytes > 65536 || (h->page_bytes & (h->page_bytes - 1)) != 0 ||
	    h->req_offset != TMEM_SHIM_REQ_OFFSET || h->resp_offset != TMEM_SHIM_RESP_OFFSET(n) ||
	    h->slots_offset != TMEM_SHIM_SLOTS_OFFSET(n, h->page_bytes) ||
	    h->map_bytes != TMEM_SHIM_MAP_BYTES(n, h->page_bytes))
		return -3;
	if (mapped_bytes < h->map_bytes)
		return -4;
	return 0;
}

/* One ring: `idx` in the shared header, `own` the caller's private copy of the index it writes,
 * `entries` of `size` bytes each. Entries are copied whole into and out of the shared area, and
 * only the private copies are trusted. */
static int ring_push(struct tmem_shim_ring_idx *idx, tsf_u32 *own, tsf_u32 n, unsigned char *entries,
		     tsf_u32 size, const void *entry)
{
	tsf_u32 head = *own;
	tsf_u32 tail = tsf_load_acquire(&idx->tail);

	if (head - tail >= n)
		return -1;
	memcpy(entries + (tsf_u64)(head & (n - 1)) * size, entry, size);
	*own = head + 1;
	tsf_store_release(&idx->head, head + 1);
	return 0;
}

static int ring_pop(struct tmem_shim_ring_idx *idx, tsf_u32 *own, tsf_u32 n, const unsigned char *entries,
		    tsf_u32 size, void *entry)
{
	tsf_u32 tail = *own;
	tsf_u32 head = tsf_load_acquire(&idx->head);

	if (head == tail)
		return 0;
	if (head - tail > n)
		return -1;
	memcpy(entry, entries + (tsf_u64)(tail & (n - 1)) * size, size);
	*own = tail + 1;
	tsf_store_release(&idx->tail, tail + 1);
	return 1;
}

static unsigned char *req_entries(const struct tsr_side *s)
{
	return (unsigned char *)s->area + TMEM_SHIM_REQ_OFFSET;
}

static unsigned char *resp_entries(const struct tsr_side *s)
{
	return (unsigned char *)s->area + TMEM_SHIM_RESP_OFFSET(s->nr_slots);
}

int tsr_req_push(struct tsr_side *s, const struct tmem_shim_req *req)
{
	return ring_push(&tsr_header(s->area)->req, &s->req_own, s->nr_slots, req_entries(s),
			 sizeof(*req), req);
}

int tsr_req_pop(struct tsr_side *s, struct tmem_shim_req *out)
{
	return ring_pop(&tsr_header(s->area)->req, &s->req_own, s->nr_slots, req_entries(s),
			sizeof(*out), out);
}

int tsr_resp_push(struct tsr_side *s, const struct tmem_shim_resp *resp)
{
	return ring_push(&tsr_header(s->area)->resp, &s->resp_own, s->nr_slots, resp_entries(s),
			 sizeof(*resp), resp);
}

int tsr_resp_pop(struct tsr_side *s, struct tmem_shim_resp *out)
{
	return ring_pop(&tsr_header(s->area)->resp, &s->resp_own, s->nr_slots, resp_entries(s),
			sizeof(*out), out);
}

tsf_u32 tsr_req_pending(const struct tsr_side *s)
{
	struct tmem_shim_header *h = tsr_header(s->area);
	tsf_u32 pending = s->req_own - tsf_load_acquire(&h->req.tail);

	return pending > s->nr_slots ? s->nr_slots : pending;
}
