#include "server/io/monitored_device.h"

#include "absl/container/flat_hash_map.h"

namespace tmem::io {
namespace {

template <typename Fn>
absl::Status Watched(IoWatch* watch, Fn fn) {
  IoScope scope(watch);
  absl::Status s = fn();
  scope.Done(s.ok());
  return s;
}

}  // namespace

absl::Status MonitoredDevice::Read(uint64_t offset, void* buf, size_t len) {
  return Watched(&watch_, [&] { return base_->Read(offset, buf, len); });
}

void MonitoredDevice::ReadMany(std::span<ReadOp> ops) {
  IoScope scope(&watch_);
  base_->ReadMany(ops);
  uint64_t failed = 0;
  for (const ReadOp& op : ops) failed += op.status.ok() ? 0 : 1;
  scope.Done(failed == 0, failed);
}

namespace {

class WatchedReadQueue final : public ReadQueue {
 public:
  WatchedReadQueue(std::unique_ptr<ReadQueue> base, IoWatch* watch) : base_(std::move(base)), watch_(watch) {}
  ~WatchedReadQueue() override {
    base_.reset();  // waits for every read
    for (const auto& [tag, w] : batches_) watch_->End(w.slot, true, 0);
  }
  void Submit(std::span<BlockDevice::ReadOp> ops, uint64_t tag) override {
    batches_[tag] = {ops, watch_->Begin()};
    base_->Submit(ops, tag);
  }
  void Reap(std::vector<uint64_t>* done) override {
    const size_t from = done->size();
    base_->Reap(done);
    for (size_t i = from; i < done->size(); ++i) {
      auto it = batches_.find((*done)[i]);
      if (it == batches_.end()) continue;
      uint64_t failed = 0;
      for (const BlockDevice::ReadOp& op : it->second.ops) failed += op.status.ok() ? 0 : 1;
      watch_->End(it->second.slot, failed == 0, failed);
      batches_.erase(it);
    }
  }
  int event_fd() const override { return base_->event_fd(); }
  size_t in_flight() const override { return base_->in_flight(); }
  void Plug() override { base_->Plug(); }
  void Unplug() override { base_->Unplug(); }
  bool plugs() const override { return base_->plugs(); }

 private:
  struct Watched {
    std::span<BlockDevice::ReadOp> ops;
    int slot;
  };
  std::unique_ptr<ReadQueue> base_;
  IoWatch* const watch_;
  absl::flat_hash_map<uint64_t, Watched> batches_;
};

}  // namespace

std::unique_ptr<ReadQueue> MonitoredDevice::NewReadQueue() {
  std::unique_ptr<ReadQueue> base = base_->NewReadQueue();
  if (base == nullptr) return nullptr;
  return std::make_unique<WatchedReadQueue>(std::move(base), &watch_);
}

absl::Status MonitoredDevice::Write(uint64_t offset, const void* buf, size_t len) {
  return Watched(&watch_, [&] { return base_->Write(offset, buf, len); });
}

absl::Status MonitoredDevice::Sync() {
  return Watched(&watch_, [&] { return base_->Sync(); });
}

}  // namespace tmem::io
