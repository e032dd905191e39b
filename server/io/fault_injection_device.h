// A BlockDevice wrapper for crash and error tests, in the spirit of RocksDB's
// FaultInjectionTestFS:
//  - it remembers every write since the last Sync; SimulatePowerCut() then drops each of them
//    or tears it (some 512-byte sectors new, the rest old), and the device fails all I/O with
//    EIO until Restart() — like a machine that lost power and is booted again;
//  - chosen operations fail with EIO (FailNext, or a predicate).
#ifndef TMEM_SERVER_IO_FAULT_INJECTION_DEVICE_H_
#define TMEM_SERVER_IO_FAULT_INJECTION_DEVICE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "server/io/block_device.h"

namespace tmem::io {

class FaultInjectionDevice final : public BlockDevice {
 public:
  enum class Op { kRead, kWrite, kSync };
  enum class PowerCutMode {
    kDropUnsynced,  // every write since the last Sync is undone
    kTearUnsynced,  // every such write keeps a random subset of its 512-byte sectors
  };
  using FailurePredicate = std::function<bool(Op op, uint64_t offset, size_t len)>;

  // Borrows `base`, which must outlive this object.
  explicit FaultInjectionDevice(BlockDevice* base);

  uint64_t size_bytes() const override { return base_->size_bytes(); }
  uint32_t alignment() const override { return base_->alignment(); }
  absl::Status Read(uint64_t offset, void* buf, size_t len) override;
  absl::Status Write(uint64_t offset, const void* buf, size_t len) override;
  absl::Status Sync() override;
  std::string Describe() const override;

  // Loses or tears the unsynced writes (deterministically for a given seed), then fails every
  // operation with EIO until Restart().
  absl::Status SimulatePowerCut(PowerCutMode mode, uint64_t seed);
  void Restart();

  // The next `count` operations of kind `op` fail with EIO.
  void FailNext(Op op, int count);
  // Every operation for which `pred` returns true fails with EIO (nullptr clears it).
  void SetFailurePredicate(FailurePredicate pred);

  // Writes for which `pred` returns true block (before touching the device, without holding any
  // lock of this device) until ReleaseStalledWrites(); other I/O goes on. For tests of slow or
  // stuck writes. Returns at once for writes that do not match.
  void StallWrites(std::function<bool(uint64_t offset, size_t len)> pred);
  void ReleaseStalledWrites();
  // Writes currently blocked by StallWrites.
  int stalled_write_count() const;
  // The same for reads: every read blocks until ReleaseStalledReads() (a slow or hung device
  // under the readers).
  void StallReads();
  void ReleaseStalledReads();
  int stalled_read_count() const;

  uint64_t unsynced_write_count() const;
  uint64_t write_count() const;
  uint64_t sync_count() const;

 private:
  struct UndoRecord {
    uint64_t offset;
    std::vector<uint8_t> old_bytes;
  };
  // Returns true if this operation must fail now.
  bool ShouldFailLocked(Op op, uint64_t offset, size_t len) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  BlockDevice* const base_;
  // Held across each base I/O so that the undo log matches the device exactly; a test device
  // needs exactness more than concurrency.
  mutable Mutex mu_;
  bool powered_off_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<UndoRecord> unsynced_ ABSL_GUARDED_BY(mu_);
  int fail_next_[3] ABSL_GUARDED_BY(mu_) = {0, 0, 0};
  FailurePredicate predicate_ ABSL_GUARDED_BY(mu_);
  uint64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;

  // Taken without mu_ (never both at once).
  mutable Mutex stall_mu_;
  CondVar stall_cv_;
  std::function<bool(uint64_t, size_t)> stall_pred_ ABSL_GUARDED_BY(stall_mu_);
  int stalled_ ABSL_GUARDED_BY(stall_mu_) = 0;
  bool stall_reads_ ABSL_GUARDED_BY(stall_mu_) = false;
  int stalled_reads_ ABSL_GUARDED_BY(stall_mu_) = 0;
};

}  // namespace tmem::io

#endif  // TMEM_SERVER_IO_FAULT_INJECTION_DEVICE_H_
