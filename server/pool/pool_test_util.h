// Test harness for the page pool engine: a fault-injecting memory device, a RocksDB directory
// under TEST_TMPDIR, and helpers that make pages whose bytes name their handle and version.
#ifndef TMEM_SERVER_POOL_POOL_TEST_UTIL_H_
#define TMEM_SERVER_POOL_POOL_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/io/fault_injection_device.h"
#include "server/io/memory_device.h"
#include "server/log/segment_log.h"
#include "server/pool/pool_engine.h"

namespace tmem::pool::testing {

inline std::string FreshDir(const std::string& name) {
  static std::atomic<int> counter{0};
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(base ? base : "/var/tmp") + "/" + name + "_" + std::to_string(::getpid()) + "_" +
                    std::to_string(counter++);
  std::filesystem::remove_all(dir);
  return dir;
}

// Page bytes: a 32-byte header (pool, object hash, index, version) and a filler derived from it,
// so that any page returned for the wrong handle or version is recognised.
inline std::vector<uint8_t> MakePage(uint32_t page_bytes, PoolId pool, std::string_view object, uint64_t index,
                                     uint64_t version) {
  std::vector<uint8_t> p(page_bytes);
  uint64_t h = std::hash<std::string_view>()(object);
  uint64_t words[4] = {pool, h, index, version};
  std::memcpy(p.data(), words, 32);
  uint64_t x = pool * 0x9E3779B97F4A7C15ull ^ h ^ (index << 17) ^ (version * 0xD6E8FEB86659FD93ull);
  for (size_t i = 32; i + 8 <= p.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(&p[i], &x, 8);
  }
  return p;
}

// The version encoded in a page, or -1 if the page is not an intact page of this handle.
inline int64_t VersionOf(const std::vector<uint8_t>& page, PoolId pool, std::string_view object, uint64_t index) {
  uint64_t words[4];
  std::memcpy(words, page.data(), 32);
  if (words[0] != pool || words[2] != index) return -1;
  std::vector<uint8_t> expect = MakePage(static_cast<uint32_t>(page.size()), pool, object, index, words[3]);
  if (expect != page) return -1;
  return static_cast<int64_t>(words[3]);
}

class EngineHarness {
 public:
  explicit EngineHarness(uint32_t segment_count = 32, uint32_t segment_bytes = 128 << 10)
      : mem_(log::kDataOffset + uint64_t{segment_count} * segment_bytes, 512), dev_(&mem_), dir_(FreshDir("engine")) {
    absl::Status s = log::FormatLog(&dev_, {.segment_bytes = segment_bytes});
    EXPECT_TRUE(s.ok()) << s;
  }
  ~EngineHarness() {
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  EngineOptions Options() {
    EngineOptions o;
    o.device = &dev_;
    o.metadata_dir = dir_;
    o.index_block_cache_bytes = 4 << 20;
    o.index_write_buffer_bytes = 1 << 20;
    o.log.flush_deadline_ns = 2'000'000;
    o.index_cache_entries = index_cache_entries_;
    if (customize_) customize_(o);
    return o;
  }
  PoolEngine& Open() {
    auto e = PoolEngine::Open(Options());
    EXPECT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    return *engine_;
  }
  PoolEngine& ReopenClean() {
    EXPECT_TRUE(engine_->Close().ok());
    engine_.reset();
    return Open();
  }
  // Power cut: unsynced device writes are lost or torn, the engine dies without Close.
  PoolEngine& ReopenAfterPowerCut(bool tear, uint64_t seed) {
    EXPECT_TRUE(dev_.SimulatePowerCut(tear ? io::FaultInjectionDevice::PowerCutMode::kTearUnsynced
                                           : io::FaultInjectionDevice::PowerCutMode::kDropUnsynced,
                                      seed)
                    .ok());
    engine_.reset();
    dev_.Restart();
    return Open();
  }
  PoolEngine& engine() { return *engine_; }
  // Size of the engine's RAM index cache from the next Open (0 = off).
  void set_index_cache_entries(size_t n) { index_cache_entries_ = n; }
  // Changes the options of every later Open.
  void set_customize(std::function<void(EngineOptions&)> f) { customize_ = std::move(f); }
  io::MemoryDevice& memory() { return mem_; }
  io::FaultInjectionDevice& device() { return dev_; }
  const std::string& dir() const { return dir_; }

 private:
  io::MemoryDevice mem_;
  io::FaultInjectionDevice dev_;
  std::string dir_;
  size_t index_cache_entries_ = EngineOptions().index_cache_entries;
  std::function<void(EngineOptions&)> customize_;
  std::unique_ptr<PoolEngine> engine_;
};

}  // namespace tmem::pool::testing

#endif  // TMEM_SERVER_POOL_POOL_TEST_UTIL_H_
