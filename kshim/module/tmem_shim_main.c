// SPDX-License-Identifier: GPL-2.0
/*
 * tmem_shim: a cleancache backend that forwards the kernel's clean-page evictions to tmemd
 * through the userspace relay tmem-shimd, over a shared ring (kshim/include/tmem_shim_abi.h).
 *
 * For kernels with CONFIG_CLEANCACHE (3.x - 5.16); tested on 5.10.
 *
 *  - put_page runs with the mapping's xa_lock held and interrupts off: it copies the page into
 *    a free ring slot and returns (dropped and counted when no slot is free).
 *  - get_page may sleep: it queues a request and waits for the relay's answer at most
 *    get_timeout_ms, then misses. A slot whose get timed out stays the relay's until its
 *    answer or a detach comes.
 *  - Invalidations are never dropped (kshim/core/tsf_front.h says how).
 *  - The relay opens /dev/tmem_shim (one at a time), attaches with TMEM_SHIM_IOC_ATTACH and
 *    mmaps the shared area; closing the device detaches. Both may happen at any time.
 *  - 5.10 has no cleancache_unregister_ops(), so this module cannot be unloaded (no
 *    module_exit). Its safe "off" state is the parameter enabled=0: puts are dropped and gets
 *    miss at once, invalidations still reach tmemd (or the record) so that turning it on again
 *    never exposes a stale page. Then stop the relay; the module stays, idle.
 *
 * All state is in struct tsf_front, under shim_lock (an irq-safe spinlock: put_page runs
 * with interrupts off). Nothing sleeps under it.
 */
#include <linux/cleancache.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/random.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>

#include "tmem_shim_abi.h"
#include "tsf_front.h"

static unsigned int slots = 256;
module_param(slots, uint, 0444);
MODULE_PARM_DESC(slots, "ring slots (requests in flight and page slots), a power of two, 8..4096");
static unsigned int get_timeout_ms = 50;
module_param(get_timeout_ms, uint, 0644);
MODULE_PARM_DESC(get_timeout_ms, "how long a get waits for the relay before it misses");
static unsigned int record_entries = 1024;
module_param(record_entries, uint, 0444);
MODULE_PARM_DESC(record_entries, "invalidations kept while detached before a whole-pool flush");
static unsigned int filter_bits_log2 = 23;
module_param(filter_bits_log2, uint, 0444);
MODULE_PARM_DESC(filter_bits_log2, "put filter of 2^N bits (gets of pages never put miss locally); 0: off, else 10..27");
static bool enabled = true;
module_param(enabled, bool, 0644);
MODULE_PARM_DESC(enabled, "0: puts dropped, gets miss at once; invalidations still delivered");

static DEFINE_SPINLOCK(shim_lock);
static struct tsf_front front;   /* guarded by shim_lock */
static void *area;               /* the shared area (vmalloc_user) */
static size_t area_bytes;
static struct tsf_tag *tags;
static u32 *free_tags;
static struct tsf_rec *rec;
static u64 *filter;
static atomic_t dev_open = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(relay_wq); /* the relay polls here */
static DECLARE_WAIT_QUEUE_HEAD(get_wq);   /* gets wait here for their answer */
static struct dentry *dbg_dir;

static_assert(sizeof(struct cleancache_filekey) == TMEM_SHIM_KEY_BYTES);

static void wake_relay(int queued)
{
	if (queued)
		wake_up_interruptible(&relay_wq);
}

static int shim_init_fs(size_t pagesize)
{
	u8 uuid[TMEM_SHIM_UUID_BYTES];
	unsigned long flags;
	int pool, queued;

	/* A private pool: its UUID is chosen here, so that a restarted relay finds its pages. */
	get_random_bytes(uuid, sizeof(uuid));
	spin_lock_irqsave(&shim_lock, flags);
	pool = tsf_init_fs(&front, 0, uuid, (u32)pagesize, &queued);
	spin_unlock_irqrestore(&shim_lock, flags);
	wake_relay(queued);
	return pool;
}

static int shim_init_shared_fs(uuid_t *uuid, size_t pagesize)
{
	unsigned long flags;
	int pool, queued;

	spin_lock_irqsave(&shim_lock, flags);
	pool = tsf_init_fs(&front, 1, uuid->b, (u32)pagesize, &queued);
	spin_unlock_irqrestore(&shim_lock, flags);
	wake_relay(queued);
	return pool;
}

static void shim_put_page(int pool, struct cleancache_filekey key, pgoff_t index, struct page *page)
{
	unsigned long flags;
	void *src;
	int queued;

	if (!READ_ONCE(enabled))
		return;
	src = kmap_atomic(page);
	spin_lock_irqsave(&shim_lock, flags);
	queued = tsf_put(&front, pool, (const u8 *)&key, index, src);
	spin_unlock_irqrestore(&shim_lock, flags);
	kunmap_atomic(src);
	wake_relay(queued);
}

/* Jiffies until `deadline`, at least 1 (jiffies may pass it between a check and the wait). */
static long jiffies_left(unsigned long deadline)
{
	long left = (long)(deadline - jiffies);

	return left > 0 ? left : 1;
}

static int shim_get_page(int pool, struct cleancache_filekey key, pgoff_t index, struct page *page)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(READ_ONCE(get_timeout_ms));
	unsigned long flags;
	int tag, queued, rc;
	void *dst;

	if (!READ_ONCE(enabled))
		return -1;
	for (;;) {
		spin_lock_irqsave(&shim_lock, flags);
		tag = tsf_get_begin(&front, pool, (const u8 *)&key, index, &queued);
		if (tag == -2 && !time_before(jiffies, deadline))
			tsf_get_missed(&front);
		spin_unlock_irqrestore(&shim_lock, flags);
		if (tag != -2 || !time_before(jiffies, deadline))
			break;
		/* Every slot is taken: wait for an answer to free one. */
		wait_event_timeout(get_wq, tsf_free_slots(&front) > 0, jiffies_left(deadline));
	}
	if (tag < 0)
		return -1;
	wake_relay(queued);
	wait_event_timeout(get_wq, tsf_get_done(&front, tag), jiffies_left(deadline));
	dst = kmap_atomic(page);
	spin_lock_irqsave(&shim_lock, flags);
	rc = tsf_get_end(&front, tag, dst, &queued);
	spin_unlock_irqrestore(&shim_lock, flags);
	kunmap_atomic(dst);
	wake_relay(queued);
	if (wq_has_sleeper(&get_wq))
		wake_up_all(&get_wq); /* a slot was freed */
	return rc;
}

static void shim_invalidate_page(int pool, struct cleancache_filekey key, pgoff_t index)
{
	unsigned long flags;
	int queued;

	spin_lock_irqsave(&shim_lock, flags);
	queued = tsf_invalidate_page(&front, pool, (const u8 *)&key, index);
	spin_unlock_irqrestore(&shim_lock, flags);
	wake_relay(queued);
}

static void shim_invalidate_inode(int pool, struct cleancache_filekey key)
{
	unsigned long flags;
	int queued;

	spin_lock_irqsave(&shim_lock, flags);
	queued = tsf_invalidate_inode(&front, pool, (const u8 *)&key);
	spin_unlock_irqrestore(&shim_lock, flags);
	wake_relay(queued);
}

static void shim_invalidate_fs(int pool)
{
	unsigned long flags;
	int queued;

	spin_lock_irqsave(&shim_lock, flags);
	queued = tsf_invalidate_fs(&front, pool);
	spin_unlock_irqrestore(&shim_lock, flags);
	wake_relay(queued);
}

static const struct cleancache_ops shim_ops = {
	.init_fs = shim_init_fs,
	.init_shared_fs = shim_init_shared_fs,
	.get_page = shim_get_page,
	.put_page = shim_put_page,
	.invalidate_page = shim_invalidate_page,
	.invalidate_inode = shim_invalidate_inode,
	.invalidate_fs = shim_invalidate_fs,
};

/* ---- /dev/tmem_shim -------------------------------------------------------------------- */

static int shim_open(struct inode *inode, struct file *file)
{
	if (atomic_cmpxchg(&dev_open, 0, 1) != 0)
		return -EBUSY;
	return 0;
}

static int shim_release(struct inode *inode, struct file *file)
{
	unsigned long flags;

	spin_lock_irqsave(&shim_lock, flags);
	tsf_detach(&front);
	spin_unlock_irqrestore(&shim_lock, flags);
	wake_up_all(&get_wq);
	atomic_set(&dev_open, 0);
	pr_info("tmem_shim: relay detached\n");
	return 0;
}

static long shim_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct tmem_shim_attach at;
	unsigned long flags;
	int queued = 0, rc;

	switch (cmd) {
	case TMEM_SHIM_IOC_ATTACH:
		if (copy_from_user(&at, (void __user *)arg, sizeof(at)))
			return -EFAULT;
		if (at.abi_version != TMEM_SHIM_ABI_VERSION) {
			pr_warn("tmem_shim: relay speaks ABI %u, module %u\n", at.abi_version,
				TMEM_SHIM_ABI_VERSION);
			return -EPROTO;
		}
		spin_lock_irqsave(&shim_lock, flags);
		if (front.attached) {
			spin_unlock_irqrestore(&shim_lock, flags);
			return -EBUSY;
		}
		queued = tsf_attach(&front);
		at.nr_slots = front.ring.nr_slots;
		at.map_bytes = TMEM_SHIM_MAP_BYTES(front.ring.nr_slots, front.page_bytes);
		at.generation = front.generation;
		spin_unlock_irqrestore(&shim_lock, flags);
		wake_relay(queued);
		pr_info("tmem_shim: relay attached (generation %llu)\n", at.generation);
		if (copy_to_user((void __user *)arg, &at, sizeof(at)))
			return -EFAULT;
		return 0;
	case TMEM_SHIM_IOC_KICK:
		spin_lock_irqsave(&shim_lock, flags);
		rc = front.attached ? tsf_consume(&front, &queued) : -ENOTCONN;
		spin_unlock_irqrestore(&shim_lock, flags);
		wake_up_all(&get_wq);
		wake_relay(queued);
		if (rc == -1)
			return -EPROTO; /* impossible ring indices: the relay must start over */
		return rc < 0 ? rc : 0;
	default:
		return -ENOTTY;
	}
}

static __poll_t shim_poll(struct file *file, poll_table *wait)
{
	unsigned long flags;
	__poll_t mask = 0;

	poll_wait(file, &relay_wq, wait);
	spin_lock_irqsave(&shim_lock, flags);
	if (tsf_pending(&front) > 0)
		mask |= EPOLLIN | EPOLLRDNORM;
	spin_unlock_irqrestore(&shim_lock, flags);
	return mask;
}

static int shim_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (vma->vm_pgoff != 0 || vma->vm_end - vma->vm_start > area_bytes)
		return -EINVAL;
	return remap_vmalloc_range(vma, area, 0);
}

static const struct file_operations shim_fops = {
	.owner = THIS_MODULE,
	.open = shim_open,
	.release = shim_release,
	.unlocked_ioctl = shim_ioctl,
	.poll = shim_poll,
	.mmap = shim_mmap,
	.llseek = noop_llseek,
};

static struct miscdevice shim_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "tmem_shim",
	.fops = &shim_fops,
	.mode = 0600,
};

/* ---- debugfs: /sys/kernel/debug/tmem_shim/stats ---------------------------------------- */

static void stats_line(void *ctx, const char *name, u64 value, int is_gauge)
{
	seq_printf(ctx, "%s %llu\n", name, (unsigned long long)value);
}

static int stats_show(struct seq_file *m, void *v)
{
	struct tsf_stats st;
	unsigned long flags;

	spin_lock_irqsave(&shim_lock, flags);
	tsf_snapshot(&front, READ_ONCE(enabled), &st);
	spin_unlock_irqrestore(&shim_lock, flags);
	tsf_stats_each(&st, stats_line, m);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(stats);

static int __init shim_init(void)
{
	int rc;

	if (slots < TMEM_SHIM_MIN_SLOTS || slots > TMEM_SHIM_MAX_SLOTS || (slots & (slots - 1))) {
		pr_err("tmem_shim: slots=%u must be a power of two in [%u, %u]\n", slots,
		       TMEM_SHIM_MIN_SLOTS, TMEM_SHIM_MAX_SLOTS);
		return -EINVAL;
	}
	if (record_entries < 1 || record_entries > 1u << 20) {
		pr_err("tmem_shim: record_entries=%u must be in [1, 1048576]\n", record_entries);
		return -EINVAL;
	}
	if (filter_bits_log2 != 0 && (filter_bits_log2 < 10 || filter_bits_log2 > 27)) {
		pr_err("tmem_shim: filter_bits_log2=%u must be 0 or in [10, 27]\n", filter_bits_log2);
		return -EINVAL;
	}
	area_bytes = PAGE_ALIGN(TMEM_SHIM_MAP_BYTES(slots, PAGE_SIZE));
	area = vmalloc_user(area_bytes);
	tags = kvcalloc(slots, sizeof(*tags), GFP_KERNEL);
	free_tags = kvcalloc(slots, sizeof(*free_tags), GFP_KERNEL);
	rec = kvcalloc(record_entries, sizeof(*rec), GFP_KERNEL);
	if (filter_bits_log2)
		filter = vzalloc((1ul << filter_bits_log2) / 8);
	rc = -ENOMEM;
	if (!area || !tags || !free_tags || !rec || (filter_bits_log2 && !filter))
		goto fail;
	rc = -EINVAL;
	if (tsf_init(&front, area, slots, PAGE_SIZE, tags, free_tags, rec, record_entries))
		goto fail;
	if (filter && tsf_set_filter(&front, filter, filter_bits_log2))
		goto fail;
	rc = misc_register(&shim_dev);
	if (rc)
		goto fail;
	rc = cleancache_register_ops(&shim_ops);
	if (rc) {
		pr_err("tmem_shim: another cleancache backend is registered (%d)\n", rc);
		misc_deregister(&shim_dev);
		goto fail;
	}
	dbg_dir = debugfs_create_dir("tmem_shim", NULL);
	debugfs_create_file("stats", 0444, dbg_dir, NULL, &stats_fops);
	pr_info("tmem_shim: cleancache backend registered (%u slots, %zu KiB shared area)\n", slots,
		area_bytes >> 10);
	return 0;
fail:
	vfree(filter);
	kvfree(rec);
	kvfree(free_tags);
	kvfree(tags);
	vfree(area);
	return rc;
}
module_init(shim_init);
/* No module_exit: cleancache backends cannot be unregistered in 5.10 (see "enabled"). */

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("tmem cleancache shim: forwards clean-page evictions to tmemd via tmem-shimd");
