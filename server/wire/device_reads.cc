#include "server/wire/device_reads.h"

#include "server/wire/wire_format.h"

namespace tmem::wire {

std::unique_ptr<DeviceReads> DeviceReads::Create(pool::PoolEngine* engine) {
  std::unique_ptr<io::ReadQueue> queue = engine->NewReadQueue();
  if (queue == nullptr) return nullptr;
  return std::unique_ptr<DeviceReads>(new DeviceReads(engine, std::move(queue)));
}

DeviceReads::~DeviceReads() {
  queue_.reset();  // waits: the buffers below are written until every read is done
  for (auto& [tag, f] : in_flight_) engine_->FinishGets(&f.get->batch);
}

std::unique_ptr<PendingGet> DeviceReads::Take() {
  if (spares_.empty()) return std::make_unique<PendingGet>();
  std::unique_ptr<PendingGet> get = std::move(spares_.back());
  spares_.pop_back();
  return get;
}

void DeviceReads::Give(std::unique_ptr<PendingGet> get) {
  // Kept for the next get, unless its buffer grew past a batch of 4 KiB pages (a batch of large
  // pages is not worth keeping memory for).
  if (spares_.size() < kSpares && get->pages.capacity() <= kMaxBatch * 4096) spares_.push_back(std::move(get));
}

void DeviceReads::Submit(void* owner, std::unique_ptr<PendingGet> get) {
  const uint64_t tag = next_tag_++;
  std::span<io::BlockDevice::ReadOp> ops = get->batch.device_reads();
  in_flight_[tag] = InFlight{owner, std::move(get)};
  queue_->Submit(ops, tag);
}

void DeviceReads::Reap(std::vector<std::pair<void*, std::unique_ptr<PendingGet>>>* done) {
  reaped_.clear();
  queue_->Reap(&reaped_);
  for (uint64_t tag : reaped_) {
    auto it = in_flight_.find(tag);
    if (it == in_flight_.end()) continue;
    InFlight f = std::move(it->second);
    in_flight_.erase(it);
    if (f.owner != nullptr) {
      done->emplace_back(f.owner, std::move(f.get));
    } else {
      engine_->FinishGets(&f.get->batch);
      Give(std::move(f.get));
    }
  }
}

void DeviceReads::Orphan(void* owner) {
  for (auto& [tag, f] : in_flight_) {
    if (f.owner == owner) f.owner = nullptr;
  }
}

}  // namespace tmem::wire
