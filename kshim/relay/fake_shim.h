// The module's side of the shim, in-process: the same core logic (kshim/core/tsf_front.c) that
// tmem_shim.ko runs, under a mutex instead of a spinlock, with cleancache-like calls for tests
// and a ShimDevice for the relay. Used by the relay's tests; not by tmem-shimd.
#ifndef TMEM_KSHIM_RELAY_FAKE_SHIM_H_
#define TMEM_KSHIM_RELAY_FAKE_SHIM_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/mutex.h"
#include "kshim/relay/shim_device.h"

extern "C" {
#include "tsf_front.h"
}

namespace tmem::kshim {

using FileKey = std::array<uint8_t, TMEM_SHIM_KEY_BYTES>;
using PoolUuid = std::array<uint8_t, TMEM_SHIM_UUID_BYTES>;

class FakeShim {
 public:
  // filter_bits_log2: the put filter's size, as the module's parameter of that name.
  FakeShim(uint32_t nr_slots = 64, uint32_t record_entries = 256, uint32_t page_bytes = 4096,
           uint32_t filter_bits_log2 = 16);
  ~FakeShim();
  FakeShim(const FakeShim&) = delete;
  FakeShim& operator=(const FakeShim&) = delete;

  // cleancache's calls, as the kernel makes them.
  int InitFs(const PoolUuid& uuid, bool shared = false);
  void Put(int pool, const FileKey& key, uint64_t index, std::span<const uint8_t> page);
  // True with `out` filled on a hit; waits for the relay at most `timeout`.
  bool Get(int pool, const FileKey& key, uint64_t index, std::span<uint8_t> out,
           std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  void InvalidatePage(int pool, const FileKey& key, uint64_t index);
  void InvalidateInode(int pool, const FileKey& key);
  void InvalidateFs(int pool);

  tsf_counters Counters();
  tsf_pool PoolState(int pool);
  uint32_t Recorded();
  // Waits until the relay has answered everything queued; false after `timeout`.
  bool WaitIdle(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

  // The device the relay opens: one at a time (FailedPrecondition otherwise); destroying it
  // detaches, as closing /dev/tmem_shim does.
  absl::StatusOr<std::unique_ptr<ShimDevice>> Open();

 private:
  class Device;
  Mutex mu_;
  CondVar cv_;  // requests queued, answers read, attach/detach
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<tsf_tag> tags_;
  std::vector<uint32_t> free_tags_;
  std::vector<tsf_rec> rec_;
  std::vector<uint64_t> filter_;
  void* area_ = nullptr;
  size_t area_bytes_ = 0;
  tsf_front front_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tmem::kshim

#endif  // TMEM_KSHIM_RELAY_FAKE_SHIM_H_
