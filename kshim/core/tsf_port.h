/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* What the shim's core needs from its environment, in the kernel and in userspace. */
#ifndef TSF_PORT_H_
#define TSF_PORT_H_

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/string.h>
#include <linux/compiler.h>
#include <asm/barrier.h>
#define tsf_load_acquire(p) smp_load_acquire(p)
#define tsf_store_release(p, v) smp_store_release(p, v)
#define tsf_read_once(x) READ_ONCE(x)
typedef u8 tsf_u8;
typedef u32 tsf_u32;
typedef u64 tsf_u64;
typedef s32 tsf_s32;
#else
#include <stdint.h>
#include <string.h>
#define tsf_load_acquire(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define tsf_store_release(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)
#define tsf_read_once(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
typedef uint8_t tsf_u8;
typedef uint32_t tsf_u32;
typedef uint64_t tsf_u64;
typedef int32_t tsf_s32;
#endif

#endif /* TSF_PORT_H_ */
