// A file backend watches its I/O for the export's health: failed operations are counted, and
// nothing is left in flight after each call.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "server/backend/block_backend.h"

namespace tmem::backend {
namespace {

TEST(FileBackendTest, FailedWritesAreCountedForHealthAndNothingStaysInFlight) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/file_backend_" + std::to_string(getpid());
  auto b = OpenFileBackend({.path = path, .create_size_bytes = 1 << 20});
  ASSERT_TRUE(b.ok()) << b.status();
  const io::IoWatch* watch = (*b)->io_watch();
  ASSERT_NE(watch, nullptr);
  std::vector<uint8_t> page(4096, 'x');
  ASSERT_TRUE((*b)->Pwrite(page.data(), 4096, 0, false).ok());
  ASSERT_TRUE((*b)->Pread(page.data(), 4096, 0).ok());
  EXPECT_EQ(watch->errors(), 0u);
  EXPECT_GE(watch->completed(), 2u);
  // Writes past a file-size limit fail with EFBIG: a real failing write, without a sick disk.
  signal(SIGXFSZ, SIG_IGN);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  small.rlim_cur = 64 << 10;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const absl::Status st = (*b)->Pwrite(page.data(), 4096, 512 << 10, false);
  setrlimit(RLIMIT_FSIZE, &old);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(watch->errors(), 1u);
  EXPECT_EQ(watch->InFlight(), 0);
  EXPECT_EQ(watch->OldestInFlightNanos(), 0);
  unlink(path.c_str());
}

}  // namespace
}  // namespace tmem::backend
