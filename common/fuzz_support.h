// Helpers shared by the libFuzzer targets of the on-disk formats and the config file
// (server/*/*_fuzzer.cc): a check that fails the run in every build mode (assert is gone under
// NDEBUG, and a fuzz target's invariants are the point of running it), and the hook through
// which scripts/fuzz_*.sh writes a target's built-in seeds into its corpus directory.
#ifndef TMEM_COMMON_FUZZ_SUPPORT_H_
#define TMEM_COMMON_FUZZ_SUPPORT_H_

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

// Aborts (a crash for libFuzzer and for //common:fuzz_driver.cc) when `cond` is false, naming it.
#define TMEM_FUZZ_CHECK(cond)                                                                \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

namespace tmem::fuzz {

// When TMEM_FUZZ_WRITE_SEEDS names a directory, writes `seeds` into it as seed0, seed1, ...
// (called from LLVMFuzzerInitialize, so that libFuzzer starts from inputs the decoders accept).
inline void WriteSeedsIfAsked(const std::vector<std::string>& seeds) {
  const char* dir = std::getenv("TMEM_FUZZ_WRITE_SEEDS");
  if (dir == nullptr) return;
  for (size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream(std::string(dir) + "/seed" + std::to_string(i), std::ios::binary) << seeds[i];
  }
}

}  // namespace tmem::fuzz

#endif  // TMEM_COMMON_FUZZ_SUPPORT_H_
