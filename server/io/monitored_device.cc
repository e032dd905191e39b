#include "server/io/monitored_device.h"

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

absl::Status MonitoredDevice::Write(uint64_t offset, const void* buf, size_t len) {
  return Watched(&watch_, [&] { return base_->Write(offset, buf, len); });
}

absl::Status MonitoredDevice::Sync() {
  return Watched(&watch_, [&] { return base_->Sync(); });
}

}  // namespace tmem::io
