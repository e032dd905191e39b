// Helper process for engine_crash_test: runs the page pool engine on a real O_DIRECT file.
//   crash_helper <device> <metadata-dir> run     put versions forever (until killed); prints
//                                                "ready" to stdout after the first 2000 puts
//   crash_helper <device> <metadata-dir> clean   put 3000 pages (handle i % 1000, version i),
//                                                flush handles 0..99, close cleanly
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "server/io/file_device.h"
#include "server/pool/pool_engine.h"

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  auto dev = tmem::io::FileDevice::Open({.path = argv[1]});
  if (!dev.ok()) return 3;
  tmem::pool::EngineOptions o;
  o.device = dev->get();
  o.metadata_dir = argv[2];
  auto e = tmem::pool::PoolEngine::Open(o);
  if (!e.ok()) {
    std::fprintf(stderr, "%s\n", e.status().ToString().c_str());
    return 4;
  }
  tmem::pool::Uuid u{};
  u[0] = 42;
  auto pool = (*e)->CreateSharedPool(u, 4096);
  if (!pool.ok()) return 5;
  std::vector<uint8_t> page(4096);
  auto put = [&](uint64_t i) {
    uint64_t handle = i % 1000;
    std::memcpy(page.data(), &i, 8);
    std::memcpy(page.data() + 8, &handle, 8);
    return (*e)->Put(*pool, "file", handle, page);
  };
  if (std::string(argv[3]) == "clean") {
    for (uint64_t i = 0; i < 3000; ++i) {
      if (!put(i).ok()) return 6;
    }
    for (uint64_t h = 0; h < 100; ++h) {
      if (!(*e)->FlushPage(*pool, "file", h).ok()) return 7;
    }
    return (*e)->Close().ok() ? 0 : 8;
  }
  for (uint64_t i = 0;; ++i) {
    if (!put(i).ok()) return 9;
    if (i == 2000) {
      std::printf("ready\n");
      std::fflush(stdout);
    }
  }
}
