// tmem-shimd's work: answer the shim's ring requests with libtmemclient.
//
// Requests are taken in ring order and answered in that order of effect: runs of puts (or of
// gets) to one pool travel as one batch, anything else alone, and a batch never passes an
// invalidation. Every pool the module announces becomes a shared tmemd pool named by its UUID
// (the module chooses a UUID for each private pool), under the relay's tenant: a restarted
// relay, or a tmemd that restarted with its pages, finds the same pool again. An unmounted
// private pool is destroyed in tmemd.
//
// Invalidations are answered OK only when delivered; when libtmemclient could only record one
// for replay (its server unreachable) the answer is DEFERRED, and the module flushes that pool
// whole if this relay goes away before the replay.
//
// Thread-safety: one thread calls Serve; counters() may be read from any thread.
#ifndef TMEM_KSHIM_RELAY_RELAY_H_
#define TMEM_KSHIM_RELAY_RELAY_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "client/tmem_client.h"
#include "kshim/relay/shim_device.h"

extern "C" {
#include "tmem_shim_abi.h"
#include "tsf_ring.h"
}

namespace tmem::kshim {

struct RelayOptions {
  std::string tenant;  // namespace of the pools' UUIDs in tmemd (the node's name)
  int wait_ms = 200;   // longest sleep between checks of `stop`
  // Sequential prefetch: a get that follows the previous get of the same file also fetches the
  // next `prefetch_pages - 1` pages in the same call, kept (at most `prefetch_cache_pages`)
  // for the gets that follow — unless the file's last page asked of tmemd missed (its
  // neighbours are likely missing too), and never for a shared pool (other clients invalidate
  // its pages in tmemd directly). 0 or 1: off.
  int prefetch_pages = 32;
  int prefetch_cache_pages = 4096;
};

struct RelayCounters {
  std::atomic<uint64_t> attached{0};  // 1 while Serve holds the shim's ring (a gauge)
  std::atomic<uint64_t> attaches{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> puts{0};
  std::atomic<uint64_t> gets{0};
  std::atomic<uint64_t> get_hits{0};
  std::atomic<uint64_t> invalidations{0};
  std::atomic<uint64_t> invalidations_deferred{0};
  std::atomic<uint64_t> pool_flushes{0};
  std::atomic<uint64_t> pools_announced{0};
  std::atomic<uint64_t> pools_released{0};
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> bad_requests{0};
  std::atomic<uint64_t> prefetched{0};     // pages fetched ahead and kept
  std::atomic<uint64_t> prefetch_hits{0};  // gets answered from them
};

class Relay {
 public:
  Relay(client::TmemClient* client, RelayOptions options);
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Attaches to `device` and answers its requests until `stop` is set (OK) or the device fails
  // (its error). The device object detaches when destroyed; a later Serve on a new device object
  // attaches again (the module then announces its pools anew).
  absl::Status Serve(ShimDevice& device, const std::atomic<bool>& stop);

  const RelayCounters& counters() const { return counters_; }

 private:
  struct Pool {
    std::array<uint8_t, 16> uuid{};
    bool shared = false;
    client::PoolRef ref = 0;
  };
  // Answers every request popped from the ring; false if the ring was corrupt.
  bool Round(tsr_side& side, const ShimMapping& map);
  void Answer(tsr_side& side, const tmem_shim_req& req, int32_t result);
  void Announce(const tmem_shim_req& req);
  void Release(const tmem_shim_req& req);
  // The run [begin, end) of puts (or gets) to one pool.
  void PutRun(tsr_side& side, const ShimMapping& map, const std::vector<tmem_shim_req>& reqs, size_t begin, size_t end);
  void GetRun(tsr_side& side, const ShimMapping& map, const std::vector<tmem_shim_req>& reqs, size_t begin, size_t end);
  int32_t Invalidate(const tmem_shim_req& req);
  const Pool* Find(uint32_t shim_pool);
  // The prefetched pages of one pool (all of it when `object` is null), or one page.
  void Forget(uint32_t shim_pool, const std::string* object, const uint64_t* index);

  client::TmemClient* const client_;
  const RelayOptions options_;
  std::map<uint32_t, Pool> pools_;                              // by the module's pool id
  std::map<std::array<uint8_t, 16>, client::PoolRef> by_uuid_;  // client pools, reused on re-attach
  // Prefetched pages by (module pool, object, index), and their order of arrival (for eviction;
  // entries already gone are skipped). Coherent because every request passes here in order:
  // a put or invalidation of a page drops its prefetched copy.
  using PageKey = std::tuple<uint32_t, std::string, uint64_t>;
  std::map<PageKey, std::vector<uint8_t>> prefetched_;
  std::deque<PageKey> prefetch_order_;
  struct FileReads {
    uint64_t last = 0;            // last page index asked
    bool last_remote_hit = true;  // the last page asked of tmemd was there: fetching ahead pays
  };
  std::map<std::pair<uint32_t, std::string>, FileReads> last_get_;  // per file
  RelayCounters counters_;
};

// The object key tmemd sees for a file key: its bytes without trailing zeros (at least one).
std::string ObjectKey(std::span<const uint8_t, TMEM_SHIM_KEY_BYTES> key);

}  // namespace tmem::kshim

#endif  // TMEM_KSHIM_RELAY_RELAY_H_
