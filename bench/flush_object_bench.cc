// Measures what many FlushObject calls (the kernel's flush_inode, sent for every evicted inode,
// usually for objects with no cached pages) cost later gets. Prints get rates before and after.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "server/io/memory_device.h"
#include "server/log/segment_log.h"
#include "server/pool/pool_engine.h"

namespace {
void Die(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  }
}
double GetRate(tmem::pool::PoolEngine& e, tmem::pool::PoolId pool, int n) {
  std::vector<uint8_t> out(4096);
  std::mt19937_64 rng(1);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    uint64_t k = rng() % 20000;
    auto r = e.Get(pool, "obj" + std::to_string(k % 100), k, out);
    Die(r.status());
  }
  return n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  const int flushes = argc > 1 ? std::stoi(argv[1]) : 100000;
  std::string dir = "/var/tmp/tmem-bench/flush_object.meta";
  std::filesystem::remove_all(dir);
  tmem::io::MemoryDevice dev(256 << 20, 4096);
  Die(tmem::log::FormatLog(&dev, {}));
  tmem::pool::EngineOptions o;
  o.device = &dev;
  o.metadata_dir = dir;
  auto e = tmem::pool::PoolEngine::Open(o);
  Die(e.status());
  tmem::pool::Uuid u{};
  auto pool = (*e)->CreateSharedPool(u, 4096);
  Die(pool.status());
  std::vector<uint8_t> page(4096, 7);
  for (uint64_t k = 0; k < 20000; ++k) Die((*e)->Put(*pool, "obj" + std::to_string(k % 100), k, page));
  std::printf("gets_per_s_before %.0f\n", GetRate(**e, *pool, 100000));
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < flushes; ++i) Die((*e)->FlushObject(*pool, "inode" + std::to_string(i)));
  double fs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("flush_objects %d\nflush_object_per_s %.0f\n", flushes, flushes / fs);
  std::printf("gets_per_s_after %.0f\n", GetRate(**e, *pool, 100000));
  Die((*e)->Close());
  std::filesystem::remove_all(dir);
  return 0;
}
