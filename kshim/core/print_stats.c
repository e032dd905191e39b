/* Prints what /sys/kernel/debug/tmem_shim/stats of a just-loaded module holds, one
 * "name value" line each, from the same table the module prints (tsf_stats_each). */
#include <stdio.h>
#include <string.h>

#include "tsf_front.h"

static void line(void *ctx, const char *name, tsf_u64 value, int is_gauge)
{
	(void)ctx;
	(void)is_gauge;
	printf("%s %llu\n", name, (unsigned long long)value);
}

int main(void)
{
	struct tsf_stats s;

	memset(&s, 0, sizeof(s));
	tsf_stats_each(&s, line, NULL);
	return 0;
}
