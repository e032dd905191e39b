/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The two rings of the shared area (kshim/include/tmem_shim_abi.h): producer and consumer
 * operations, and the header checks. Plain C for the kernel and userspace.
 *
 * Each ring has one producer and one consumer; callers serialise their own side.
 */
#ifndef TSF_RING_H_
#define TSF_RING_H_

#include "tsf_port.h"
#include "tmem_shim_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a fresh header (rings empty) for nr_slots slots of page_bytes each. */
void tsr_init_header(void *area, tsf_u32 nr_slots, tsf_u32 page_bytes, tsf_u64 generation);

/* Checks a mapped header against what a relay expects: 0 when usable, otherwise a negative
 * code (-1 magic, -2 ABI version, -3 sizes or offsets, -4 map length). */
int tsr_check_header(const void *area, tsf_u64 mapped_bytes);

static inline struct tmem_shim_header *tsr_header(void *area)
{
	return (struct tmem_shim_header *)area;
}

static inline unsigned char *tsr_slot(void *area, tsf_u32 nr_slots, tsf_u32 page_bytes, tsf_u32 tag)
{
	return (unsigned char *)area + TMEM_SHIM_SLOTS_OFFSET(nr_slots, page_bytes) +
	       (tsf_u64)tag * page_bytes;
}

/*
 * One side of the shared area. Each side keeps its own copy of the slot count and of the
 * index it writes (the producer's head, the consumer's tail) and only publishes it: what the
 * other side writes into the shared header can never make an access leave the rings.
 */
struct tsr_side {
	void *area;
	tsf_u32 nr_slots;
	tsf_u32 req_own;  /* module: req head; relay: req tail */
	tsf_u32 resp_own; /* module: resp tail; relay: resp head */
};

/* Requests (module -> relay). Push: 0, or -1 when full. Pop: 1 with *out filled, 0 if
 * empty, -1 if the indices are impossible (the other side wrote garbage). */
int tsr_req_push(struct tsr_side *s, const struct tmem_shim_req *req);
int tsr_req_pop(struct tsr_side *s, struct tmem_shim_req *out);

/* Responses (relay -> module), as above. */
int tsr_resp_push(struct tsr_side *s, const struct tmem_shim_resp *resp);
int tsr_resp_pop(struct tsr_side *s, struct tmem_shim_resp *out);

/* Requests the module pushed that the relay has not popped (module side, for poll). */
tsf_u32 tsr_req_pending(const struct tsr_side *s);

#ifdef __cplusplus
}
#endif

#endif /* TSF_RING_H_ */
