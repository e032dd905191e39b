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

static struct tmem_shim_req *req_entries(void *area)
{
	return (struct tmem_shim_req *)((unsigned char *)area + TMEM_SHIM_REQ_OFFSET);
}

static struct tmem_shim_resp *resp_entries(void *area, tsf_u32 n)
{
	return (struct tmem_shim_resp *)((unsigned char *)area + TMEM_SHIM_RESP_OFFSET(n));
}

int tsr_req_push(struct tsr_side *s, const struct tmem_shim_req *req)
{
	struct tmem_shim_header *h = tsr_header(s->area);
	tsf_u32 n = s->nr_slots;
	tsf_u32 head = s->req_own;
	tsf_u32 tail = tsf_load_acquire(&h->req.tail);

	if (head - tail >= n)
		return -1;
	req_entries(s->area)[head & (n - 1)] = *req;
	s->req_own = head + 1;
	tsf_store_release(&h->req.head, head + 1);
	return 0;
}

int tsr_req_pop(struct tsr_side *s, struct tmem_shim_req *out)
{
	struct tmem_shim_header *h = tsr_header(s->area);
	tsf_u32 n = s->nr_slots;
	tsf_u32 tail = s->req_own;
	tsf_u32 head = tsf_load_acquire(&h->req.head);

	if (head == tail)
		return 0;
	if (head - tail > n)
		return -1;
	*out = req_entries(s->area)[tail & (n - 1)];
	s->req_own = tail + 1;
	tsf_store_release(&h->req.tail, tail + 1);
	return 1;
}

int tsr_resp_push(struct tsr_side *s, const struct tmem_shim_resp *resp)
{
	struct tmem_shim_header *h = tsr_header(s->area);
	tsf_u32 n = s->nr_slots;
	tsf_u32 head = s->resp_own;
	tsf_u32 tail = tsf_load_acquire(&h->resp.tail);

	if (head - tail >= n)
		return -1;
	resp_entries(s->area, n)[head & (n - 1)] = *resp;
	s->resp_own = head + 1;
	tsf_store_release(&h->resp.head, head + 1);
	return 0;
}

int tsr_resp_pop(struct tsr_side *s, struct tmem_shim_resp *out)
{
	struct tmem_shim_header *h = tsr_header(s->area);
	tsf_u32 n = s->nr_slots;
	tsf_u32 tail = s->resp_own;
	tsf_u32 head = tsf_load_acquire(&h->resp.head);
	struct tmem_shim_resp *e;

	if (head == tail)
		return 0;
	if (head - tail > n)
		return -1;
	e = &resp_entries(s->area, n)[tail & (n - 1)];
	out->seq = tsf_read_once(e->seq);
	out->tag = tsf_read_once(e->tag);
	out->result = tsf_read_once(e->result);
	s->resp_own = tail + 1;
	tsf_store_release(&h->resp.tail, tail + 1);
	return 1;
}

tsf_u32 tsr_req_pending(const struct tsr_side *s)
{
	struct tmem_shim_header *h = tsr_header(s->area);
	tsf_u32 pending = s->req_own - tsf_load_acquire(&h->req.tail);

	return pending > s->nr_slots ? s->nr_slots : pending;
}
