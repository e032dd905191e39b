#include "kshim/relay/fake_shim.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace tmem::kshim {

class FakeShim::Device final : public ShimDevice {
 public:
  explicit Device(FakeShim* shim) : shim_(shim) {}
  ~Device() override {
    MutexLock lock(&shim_->mu_);
    tsf_detach(&shim_->front_);
    shim_->open_ = false;
    shim_->cv_.SignalAll();
  }
  absl::StatusOr<ShimMapping> Attach() override {
    MutexLock lock(&shim_->mu_);
    if (shim_->front_.attached) return absl::FailedPreconditionError("already attached");
    tsf_attach(&shim_->front_);
    shim_->cv_.SignalAll();
    return ShimMapping{shim_->area_, shim_->area_bytes_, shim_->front_.ring.nr_slots, shim_->front_.page_bytes,
                       shim_->front_.generation};
  }
  absl::Status Wait(int timeout_ms) override {
    MutexLock lock(&shim_->mu_);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (tsf_pending(&shim_->front_) == 0) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) break;
      shim_->cv_.WaitFor(&shim_->mu_, deadline - now);
    }
    return absl::OkStatus();
  }
  absl::Status Kick() override {
    MutexLock lock(&shim_->mu_);
    int queued;
    int rc = tsf_consume(&shim_->front_, &queued);
    shim_->cv_.SignalAll();
    if (rc < 0) return absl::FailedPreconditionError("impossible response ring indices");
    return absl::OkStatus();
  }

 private:
  FakeShim* shim_;
};

FakeShim::FakeShim(uint32_t nr_slots, uint32_t record_entries, uint32_t page_bytes, uint32_t filter_bits_log2)
    : tags_(nr_slots), free_tags_(nr_slots), rec_(record_entries), filter_((uint64_t{1} << filter_bits_log2) / 64) {
  area_bytes_ = TMEM_SHIM_MAP_BYTES(nr_slots, page_bytes);
  area_ = std::aligned_alloc(4096, (area_bytes_ + 4095) / 4096 * 4096);
  std::memset(area_, 0, area_bytes_);
  MutexLock lock(&mu_);
  if (tsf_init(&front_, area_, nr_slots, page_bytes, tags_.data(), free_tags_.data(), rec_.data(), record_entries) !=
      0) {
    throw std::invalid_argument("FakeShim: bad sizes");
  }
  if (tsf_set_filter(&front_, filter_.data(), filter_bits_log2) != 0) {  // as the module does
    throw std::invalid_argument("FakeShim: bad filter size");
  }
}

FakeShim::~FakeShim() { std::free(area_); }

absl::StatusOr<std::unique_ptr<ShimDevice>> FakeShim::Open() {
  MutexLock lock(&mu_);
  if (open_) return absl::FailedPreconditionError("the shim is held by another relay");
  open_ = true;
  return std::unique_ptr<ShimDevice>(new Device(this));
}

int FakeShim::InitFs(const PoolUuid& uuid, bool shared) {
  MutexLock lock(&mu_);
  int queued;
  int pool = tsf_init_fs(&front_, shared ? 1 : 0, uuid.data(), front_.page_bytes, &queued);
  cv_.SignalAll();
  return pool;
}

void FakeShim::Put(int pool, const FileKey& key, uint64_t index, std::span<const uint8_t> page) {
  MutexLock lock(&mu_);
  if (tsf_put(&front_, pool, key.data(), index, page.data())) cv_.SignalAll();
}

bool FakeShim::Get(int pool, const FileKey& key, uint64_t index, std::span<uint8_t> out,
                   std::chrono::milliseconds timeout) {
  MutexLock lock(&mu_);
  int queued;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int tag;
  // Every slot taken: wait (within the timeout) for an answer to free one, as the module does.
  while ((tag = tsf_get_begin(&front_, pool, key.data(), index, &queued)) == -2) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      tsf_get_missed(&front_);
      return false;
    }
    cv_.WaitFor(&mu_, deadline - now);
  }
  if (tag < 0) return false;
  cv_.SignalAll();
  while (!tsf_get_done(&front_, tag)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    cv_.WaitFor(&mu_, deadline - now);
  }
  bool hit = tsf_get_end(&front_, tag, out.data(), &queued) == 0;
  if (queued) cv_.SignalAll();
  return hit;
}

void FakeShim::InvalidatePage(int pool, const FileKey& key, uint64_t index) {
  MutexLock lock(&mu_);
  tsf_invalidate_page(&front_, pool, key.data(), index);
  cv_.SignalAll();
}

void FakeShim::InvalidateInode(int pool, const FileKey& key) {
  MutexLock lock(&mu_);
  tsf_invalidate_inode(&front_, pool, key.data());
  cv_.SignalAll();
}

void FakeShim::InvalidateFs(int pool) {
  MutexLock lock(&mu_);
  tsf_invalidate_fs(&front_, pool);
  cv_.SignalAll();
}

tsf_counters FakeShim::Counters() {
  MutexLock lock(&mu_);
  return front_.c;
}

tsf_pool FakeShim::PoolState(int pool) {
  MutexLock lock(&mu_);
  return front_.pools[pool];
}

bool FakeShim::WaitIdle(std::chrono::milliseconds timeout) {
  MutexLock lock(&mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (front_.nr_free != front_.ring.nr_slots) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    cv_.WaitFor(&mu_, deadline - now);
  }
  return true;
}

uint32_t FakeShim::Recorded() {
  MutexLock lock(&mu_);
  return front_.rec_len;
}

}  // namespace tmem::kshim
