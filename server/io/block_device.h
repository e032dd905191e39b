// The block-device interface under the segment log, and an aligned buffer for O_DIRECT I/O.
//
// Implementations: FileDevice (a file or block device opened O_DIRECT), MemoryDevice (RAM, for
// tests and demos), FaultInjectionDevice (wraps another device; loses or tears unsynced writes on
// a simulated power cut and fails chosen operations with EIO).
#ifndef TMEM_SERVER_IO_BLOCK_DEVICE_H_
#define TMEM_SERVER_IO_BLOCK_DEVICE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tmem::io {

// A contiguous byte range of a device. All methods are thread-safe; concurrent Read and Write
// of overlapping ranges are allowed and yield, for the read, some mix of old and new bytes
// (callers detect that through sequence numbers and checksums, as on a real SSD).
class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  // Usable size in bytes (a multiple of alignment()).
  virtual uint64_t size_bytes() const = 0;

  // Offsets, lengths and buffer addresses passed to Read and Write must be multiples of this
  // (4096 for O_DIRECT files). A violation returns InvalidArgument, never a partial I/O.
  virtual uint32_t alignment() const = 0;

  // Reads exactly `len` bytes at `offset`. Out of range → OutOfRange; device error → Internal
  // (the message carries errno's text).
  virtual absl::Status Read(uint64_t offset, void* buf, size_t len) = 0;

  // One read of a batch: the same rules as Read; `status` receives its outcome.
  struct ReadOp {
    uint64_t offset = 0;
    void* buf = nullptr;
    size_t len = 0;
    absl::Status status;
  };
  // Performs every read of `ops` (independent of each other, in any order, possibly at the same
  // time) and returns when all have finished. Each op's status says how it went; one failed op
  // does not stop the others. The default issues them one by one through Read.
  virtual void ReadMany(std::span<ReadOp> ops);

  // Reads that finish later, for an event loop (below). The default runs each batch through
  // ReadMany on a thread of the queue's own; FileDevice uses an io_uring. Null when the system
  // gives no eventfd (callers then read with ReadMany).
  virtual std::unique_ptr<class ReadQueue> NewReadQueue();

  // Writes exactly `len` bytes at `offset`. The data is durable only after a later Sync().
  virtual absl::Status Write(uint64_t offset, const void* buf, size_t len) = 0;

  // Makes every completed Write durable (fdatasync).
  virtual absl::Status Sync() = 0;

  // For logs and error messages, e.g. "file:/var/lib/tmem/cache.img".
  virtual std::string Describe() const = 0;
};

// Asynchronous batches of reads for one event loop: Submit starts a batch and returns at once;
// event_fd() turns readable once a finished batch can be reaped. The destructor waits for every
// batch in flight (their buffers are written until then).
//
// Thread-safety: the thread that creates a queue submits, reaps and destroys it (the io_uring
// queue is single-issuer: from another thread its submissions fail); the queue's own
// completions may come from others.
class ReadQueue {
 public:
  virtual ~ReadQueue() = default;
  // Starts every read of `ops` (ReadMany's rules: each op's status says how it went). `ops` and
  // their buffers must stay valid and untouched until Reap returns `tag`.
  virtual void Submit(std::span<BlockDevice::ReadOp> ops, uint64_t tag) = 0;
  // Appends the tags of the batches whose reads have all finished, without blocking.
  virtual void Reap(std::vector<uint64_t>* done) = 0;
  // Readable (an eventfd) while a finished batch waits to be reaped.
  virtual int event_fd() const = 0;
  // Batches submitted and not reaped yet.
  virtual size_t in_flight() const = 0;
  // While plugged, Submit only queues its reads; Unplug starts everything queued at once (one
  // system call, and one notice to the device for what the block layer dispatches together).
  // A queue that starts reads one by one anyway ignores both.
  virtual void Plug() {}
  virtual void Unplug() {}
  // Whether Plug holds reads back (the io_uring queue does).
  virtual bool plugs() const { return false; }
};

// Checks alignment and range once, for every implementation.
absl::Status CheckIo(const BlockDevice& dev, uint64_t offset, const void* buf, size_t len);

// Converts an errno value into a Status whose message names the operation.
absl::Status ErrnoStatus(int err, const std::string& what);

// A heap buffer whose address and size are multiples of `alignment`. Move-only.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(size_t size, size_t alignment = 4096);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

inline uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
inline uint64_t AlignDown(uint64_t v, uint64_t a) { return v / a * a; }

}  // namespace tmem::io

#endif  // TMEM_SERVER_IO_BLOCK_DEVICE_H_
