#include "server/io/monitored_device.h"

namespace tmem::io {

absl::Status MonitoredDevice::Read(uint64_t offset, void* buf, size_t len) {
  IoScope scope(&watch_);
  absl::Status s = base_->Read(offset, buf, len);
  scope.Done(s.ok());
  return s;
}

void MonitoredDevice::ReadMany(std::span<ReadOp> ops) {
  IoScope scope(&watch_);
  base_->ReadMany(ops);
  uint64_t failed = 0;
  for (const ReadOp& op : ops) failed += op.status.ok() ? 0 : 1;
  scope.Done(failed == 0, failed);
}

absl::Status MonitoredDevice::Write(uint64_t offset, const void* buf, size_t len) {
  IoScope scope(&watch_);
  absl::Status s = base_->Write(offset, buf, len);
  scope.Done(s.ok());
  return s;
}

absl::Status MonitoredDevice::Sync() {
  IoScope scope(&watch_);
  absl::Status s = base_->Sync();
  scope.Done(s.ok());
  return s;
}

}  // namespace tmem::io
