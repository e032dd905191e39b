// A BlockDevice on a regular file or a block device, opened O_DIRECT so that the page cache
// neither doubles the memory cost nor hides device errors.
//
// Two I/O engines: kPread (pread/pwrite) and kUring (io_uring through liburing, one ring per
// concurrent caller drawn from a pool). bench/io_engine_bench measures both; kPread is the
// default because it measured faster for the log's synchronous one-I/O-per-call pattern.
#ifndef TMEM_SERVER_IO_FILE_DEVICE_H_
#define TMEM_SERVER_IO_FILE_DEVICE_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/io/block_device.h"

namespace tmem::io {

enum class IoEngine { kPread, kUring };

// Parses "pread" or "uring".
absl::StatusOr<IoEngine> ParseIoEngine(const std::string& name);
const char* IoEngineName(IoEngine engine);

struct FileDeviceOptions {
  std::string path;
  // For a regular file: when the file does not exist or is empty it is created with this size
  // (fallocate). 0 = the file must already exist with a non-zero size. Ignored for block devices.
  uint64_t create_size_bytes = 0;
  IoEngine engine = IoEngine::kPread;
  // Alignment for O_DIRECT. 4096 is safe for every Linux filesystem and SSD.
  uint32_t alignment = 4096;
};

class FileDevice final : public BlockDevice {
 public:
  // Errors: NotFound (no such path and no create size), InvalidArgument (the filesystem refuses
  // O_DIRECT, e.g. tmpfs; a size that is not a multiple of the alignment), PermissionDenied.
  static absl::StatusOr<std::unique_ptr<FileDevice>> Open(const FileDeviceOptions& options);
  ~FileDevice() override;
  FileDevice(const FileDevice&) = delete;
  FileDevice& operator=(const FileDevice&) = delete;

  uint64_t size_bytes() const override { return size_; }
  uint32_t alignment() const override { return alignment_; }
  absl::Status Read(uint64_t offset, void* buf, size_t len) override;
  // With either engine: the whole batch goes to one io_uring (up to kBatchDepth reads in
  // flight, one system call per submission round); falls back to pread when the kernel or a
  // seccomp policy refuses io_uring.
  void ReadMany(std::span<ReadOp> ops) override;
  // An io_uring of its own (kQueueDepth reads in flight; more wait in the queue), its
  // completions signalled on an eventfd; the thread-backed default when io_uring is refused.
  std::unique_ptr<ReadQueue> NewReadQueue() override;
  absl::Status Write(uint64_t offset, const void* buf, size_t len) override;
  absl::Status Sync() override;

  static constexpr unsigned kBatchDepth = 64;
  static constexpr unsigned kQueueDepth = 256;
  std::string Describe() const override;

  IoEngine engine() const { return engine_; }

 private:
  class RingPool;
  class UringReadQueue;
  FileDevice(int fd, uint64_t size, const FileDeviceOptions& options);

  absl::Status PreadAll(uint64_t offset, void* buf, size_t len);
  // A read's outcome from its completion's result: whole, finished with pread (short, EAGAIN,
  // EINTR), past the end (0) or an error.
  void SettleRingRead(ReadOp& op, int res);
  absl::Status PwriteAll(uint64_t offset, const void* buf, size_t len);
  absl::Status UringIo(bool write, uint64_t offset, void* buf, size_t len);

  const int fd_;
  const uint64_t size_;
  const uint32_t alignment_;
  const IoEngine engine_;
  const std::string path_;
  std::unique_ptr<RingPool> rings_;         // only for kUring; thread-safe itself
  std::unique_ptr<RingPool> batch_rings_;   // rings of kBatchDepth entries for ReadMany
  std::atomic<bool> batch_uring_ok_{true};  // false once io_uring was refused
};

}  // namespace tmem::io

#endif  // TMEM_SERVER_IO_FILE_DEVICE_H_
