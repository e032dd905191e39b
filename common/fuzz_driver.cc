// A main for libFuzzer targets in the default test suite (without libFuzzer): runs the target's
// seeds, then `TMEM_FUZZ_RUNS` (default 20000) deterministic mutations of them (byte flips,
// insertions, truncations, splices). A crash or sanitizer report fails the test; the long runs
// are the targets' scripts (scripts/fuzz_*.sh) with libFuzzer itself.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);
std::vector<std::string> TmemFuzzSeeds();

int main(int argc, char** argv) {
  LLVMFuzzerInitialize(&argc, &argv);
  const char* env = std::getenv("TMEM_FUZZ_RUNS");
  const long runs = env != nullptr ? std::atol(env) : 20000;
  const std::vector<std::string> seeds = TmemFuzzSeeds();
  for (const std::string& s : seeds) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  std::mt19937_64 rng(20261201);
  for (long i = 0; i < runs; ++i) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < edits; ++k) {
      const size_t at = s.empty() ? 0 : rng() % s.size();
      switch (rng() % 5) {
        case 0:
          if (!s.empty()) s[at] = static_cast<char>(rng());
          break;
        case 1:
          s.insert(at, 1 + rng() % 4, static_cast<char>(rng()));
          break;
        case 2:
          s.resize(at);
          break;
        case 3:
          if (!s.empty()) s[at] ^= static_cast<char>(1 << (rng() % 8));
          break;
        default: {
          const std::string& other = seeds[rng() % seeds.size()];
          s = s.substr(0, at) + other.substr(rng() % (other.size() + 1));
        }
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  std::printf("%zu seeds and %ld mutations ran clean\n", seeds.size(), runs);
  return 0;
}
