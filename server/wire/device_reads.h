// DeviceReads: the device reads of one event loop's gets, in flight together on the device's
// ReadQueue (an io_uring on files) while the loop goes on serving its connections.
//
// A GET whose pages are not all in RAM becomes a PendingGet: the engine has looked its handles up
// (PoolEngine::StartGets) and its reads are submitted here; when the queue's eventfd turns
// readable the loop reaps the batches done and hands each back to its connection
// (RequestLoop::Complete), which settles it (FinishGets) and queues its reply. A connection that
// closes meanwhile is forgotten (Orphan): its gets are settled when their reads are done — the
// engine's own bookkeeping, such as dropping an entry whose page failed its checksum — and
// their replies dropped.
//
// Thread-safety: none; the loop's thread owns it.
#ifndef TMEM_SERVER_WIRE_DEVICE_READS_H_
#define TMEM_SERVER_WIRE_DEVICE_READS_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "server/io/block_device.h"
#include "server/pool/pool_engine.h"

namespace tmem::wire {

// A GET waiting for its device reads: what its reply needs.
struct PendingGet {
  uint8_t verb = 0;
  uint64_t request_id = 0;
  uint16_t count = 0;
  uint32_t page_bytes = 0;
  int64_t started_ns = 0;    // the request whole (steady clock)
  int64_t submitted_ns = 0;  // its device reads submitted
  pool::PoolEngine::GetBatch batch;
  std::vector<uint8_t> pages;  // count * page_bytes: the pages read, until the reply is built
};

class DeviceReads {
 public:
  // Null when the engine's device offers no queue (gets then read in place).
  static std::unique_ptr<DeviceReads> Create(pool::PoolEngine* engine);
  // Waits for every read in flight; their gets are settled and their replies dropped.
  ~DeviceReads();
  DeviceReads(const DeviceReads&) = delete;
  DeviceReads& operator=(const DeviceReads&) = delete;

  // Readable while batches wait to be reaped.
  int event_fd() const { return queue_->event_fd(); }
  // A PendingGet to fill (reused: its buffers stay allocated).
  std::unique_ptr<PendingGet> Take();
  void Give(std::unique_ptr<PendingGet> get);
  // Starts get->batch's device reads on behalf of `owner`.
  void Submit(void* owner, std::unique_ptr<PendingGet> get);
  // The gets whose reads are all done, with their owners (an orphan's is settled here instead).
  void Reap(std::vector<std::pair<void*, std::unique_ptr<PendingGet>>>* done);
  // `owner` is gone: its gets in flight are settled when done, and dropped.
  void Orphan(void* owner);
  size_t in_flight() const { return in_flight_.size(); }
  // Between Plug and Unplug, submitted gets wait; Unplug starts them together (io::ReadQueue).
  void Plug() { queue_->Plug(); }
  void Unplug() { queue_->Unplug(); }

 private:
  DeviceReads(pool::PoolEngine* engine, std::unique_ptr<io::ReadQueue> queue)
      : engine_(engine), queue_(std::move(queue)) {}
  struct InFlight {
    void* owner;
    std::unique_ptr<PendingGet> get;
  };
  static constexpr size_t kSpares = 16;

  pool::PoolEngine* const engine_;
  std::unique_ptr<io::ReadQueue> queue_;
  absl::flat_hash_map<uint64_t, InFlight> in_flight_;
  uint64_t next_tag_ = 1;
  std::vector<std::unique_ptr<PendingGet>> spares_;
  std::vector<uint64_t> reaped_;
};

}  // namespace tmem::wire

#endif  // TMEM_SERVER_WIRE_DEVICE_READS_H_
