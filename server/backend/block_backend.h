// BlockBackend: what an NBD export serves from. A small interface of verbs in the manner of
// nbdkit's plugins (pread / pwrite / flush / trim / zero + capabilities).
//
// Errors are absl::Status; the NBD request loop turns them into NBD errors in one place
// (nbd::NbdErrorOf): PermissionDenied → EPERM, InvalidArgument/OutOfRange → EINVAL,
// ResourceExhausted → ENOSPC, Cancelled → ESHUTDOWN (the server is stopping), anything else →
// EIO. Expected outcomes are values, not errors: a call that does not wait says so with
// BufferedOutcome::kWouldWait, and Unavailable keeps its one meaning (retry later: the store is
// down or busy).
//
// This library sits below both the NBD server (which serves a BlockBackend) and the block
// cache (which is one, and caches another).
//
// Thread-safety: every method may be called from many threads at once.
#ifndef TMEM_SERVER_BACKEND_BLOCK_BACKEND_H_
#define TMEM_SERVER_BACKEND_BLOCK_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/stats.h"
#include "server/io/io_watch.h"

namespace tmem::backend {

struct BackendCaps {
  bool flush = true;  // Flush makes earlier completed writes durable
  bool fua = true;    // Pwrite/Zero/Trim honour `fua`
  bool trim = false;
  bool zero = true;
  // Flush on any connection makes writes completed on every connection durable (true for
  // one file or device shared by all connections).
  bool multi_conn = true;
  bool read_only = false;  // the backend itself refuses writes
  // A small write without FUA completes in memory, with no device access to wait for, and
  // PreadBuffered serves what is in memory: the server then runs the small reads and writes it
  // finds together in one read of the socket on the reading thread, and sends their replies in
  // one write.
  bool buffered_writes = false;
};

// What a call that never waits did (PwriteBuffered, PreadBuffered).
enum class BufferedOutcome {
  kDone,       // the whole range was written (read)
  kWouldWait,  // it would have had to wait for a device; the caller does it with Pwrite (Pread)
};

class BlockBackend {
 public:
  virtual ~BlockBackend() = default;
  virtual uint64_t size() const = 0;
  virtual BackendCaps caps() const = 0;
  // Ranges are within size(); the request loop checks that before calling.
  virtual absl::Status Pread(void* buf, uint32_t len, uint64_t offset) = 0;
  virtual absl::Status Pwrite(const void* buf, uint32_t len, uint64_t offset, bool fua) = 0;
  // A write without FUA that never waits for a device (BackendCaps::buffered_writes): where
  // Pwrite would wait (no room in the buffers, a partial block to read first), it answers
  // kWouldWait, having written none or only part of the range, and the caller writes the
  // whole range again with Pwrite. Errors are Pwrite's. The default is Pwrite itself.
  virtual absl::StatusOr<BufferedOutcome> PwriteBuffered(const void* buf, uint32_t len, uint64_t offset) {
    if (absl::Status s = Pwrite(buf, len, offset, false); !s.ok()) return s;
    return BufferedOutcome::kDone;
  }
  // A read served from memory only: kWouldWait (and `buf` undefined) when any part of it
  // would have to come from a device; the caller then reads with Pread. The default declines.
  virtual absl::StatusOr<BufferedOutcome> PreadBuffered(void* buf, uint32_t len, uint64_t offset) {
    return BufferedOutcome::kWouldWait;
  }
  virtual absl::Status Flush() = 0;
  // Discards the range (reads afterwards may return anything the backend chooses, here zeros
  // where it can punch holes and the old data where it cannot).
  virtual absl::Status Trim(uint64_t offset, uint64_t len, bool fua) = 0;
  // Makes the range read as zeros; `may_trim` allows deallocating it.
  virtual absl::Status Zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) = 0;
  virtual std::string Describe() const = 0;
  // The backend's own metrics, if any (a remote store's fence, a cache's everything).
  virtual void VisitStats(StatsVisitor& visitor, const StatLabels& labels) const {}
  // Why the backend cannot serve now ("" while it can), for the export's health.
  virtual std::string HealthProblem() const { return ""; }
  // A stop has begun: calls waiting for room (a full cache) give up with an error now instead
  // of holding the stop. Calls that do not wait are unaffected.
  virtual void CancelWaits() {}
  // Its I/O, watched for health (hung or failing operations), or null when it keeps no watch.
  virtual const io::IoWatch* io_watch() const { return nullptr; }
};

// Zero's fallback for backends that cannot zero natively: writes zeros through Pwrite, 1 MiB
// at a time, then flushes when `fua`.
absl::Status ZeroByWriting(BlockBackend& backend, uint64_t offset, uint64_t len, bool fua);

struct FileBackendOptions {
  std::string path;
  bool read_only = false;
  // A regular file that does not exist is created with this size; 0 = it must exist.
  uint64_t create_size_bytes = 0;
};

// A regular file or a block device. Buffered I/O (the page cache may hold data until Flush);
// FUA writes with RWF_DSYNC; Flush is fdatasync; Trim punches holes in files and discards on
// block devices; Zero uses FALLOC_FL_ZERO_RANGE (or punches a hole when allowed) and falls
// back to writing zeros.
absl::StatusOr<std::unique_ptr<BlockBackend>> OpenFileBackend(const FileBackendOptions& options);

struct NbdBackendOptions {
  std::string uri;  // nbd://host[:port]/export or nbd+unix:///export?socket=/path
  bool read_only = false;
  int connections = 4;  // libnbd handles, used in turn (one request in flight on each)
  int reconnect_attempts = 3;
  int64_t reconnect_delay_ms = 200;
  int64_t connect_timeout_ms = 5000;   // a server that accepts but does not answer
  int64_t request_timeout_ms = 30000;  // a request with no reply: the connection is dropped
  // A write-type request that got no reply holds later ones back until its connection closed
  // cleanly after NBD_CMD_DISC, or this long when the connection died (nbd_backend.cc: the fence).
  int64_t fence_timeout_ms = 60000;
  // How long one write-type request waits behind the fence before it fails with Unavailable.
  int64_t fence_wait_ms = 1000;
};

// A remote NBD server through libnbd. A handle whose connection dies (or whose request gets no
// reply within `request_timeout_ms`) is reconnected, up to `reconnect_attempts` times
// `reconnect_delay_ms` apart and each bounded by `connect_timeout_ms`. A read or flush is then
// tried once more; a write, trim or zero is not (it may still land): it fails with Unavailable
// (EIO), and later write-type requests are held back until it can no longer land (the fence).
// Several connections are used only where the server offers multi-conn.
absl::StatusOr<std::unique_ptr<BlockBackend>> OpenNbdBackend(const NbdBackendOptions& options);

// "file:PATH", a plain path, or an nbd:// / nbd+unix:// URI.
// `remote`: options for an nbd:// backend (its uri and read_only are set from the others).
absl::StatusOr<std::unique_ptr<BlockBackend>> OpenBackend(const std::string& spec, bool read_only,
                                                          uint64_t create_size_bytes,
                                                          const NbdBackendOptions& remote = {});

}  // namespace tmem::backend

#endif  // TMEM_SERVER_BACKEND_BLOCK_BACKEND_H_
