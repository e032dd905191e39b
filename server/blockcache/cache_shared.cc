#include "server/blockcache/cache_shared.h"

#include "common/logging.h"

namespace tmem::blockcache {

absl::Status Failure::status() const {
  if (!failed()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("the cache device failed: ", reason()));
}

std::string Failure::reason() const {
  MutexLock lock(&mu_);
  return why_;
}

bool Failure::Set(const std::string& why) {
  {
    MutexLock lock(&mu_);
    if (set_) return false;
    set_ = true;
    why_ = why;
  }
  failed_.store(true, std::memory_order_release);
  return true;
}

void CacheShared::Fail(const std::string& why) {
  if (failure.Set(why)) {
    TMEM_LOG(Error) << Describe() << ": " << why << "; writes now fail with EIO, flushed data stays on the device";
  }
}

}  // namespace tmem::blockcache
