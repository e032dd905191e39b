// A remote NBD server as an export's backend, through libnbd.
#include <libnbd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "common/status_macros.h"
#include "server/backend/block_backend.h"
#include "server/io/block_device.h"

namespace tmem::backend {
namespace {

// Set by Await when a request timed out; read right after, by the same thread, in RunOn.
thread_local bool t_request_timed_out = false;

absl::Status LastError(const std::string& what) {
  const int err = nbd_get_errno();
  const char* msg = nbd_get_error();
  absl::Status s = io::ErrnoStatus(err != 0 ? err : EIO, what);
  return absl::Status(s.code(), absl::StrCat(what, ": ", msg != nullptr ? msg : "libnbd error"));
}

class NbdBackend final : public BlockBackend {
 public:
  explicit NbdBackend(const NbdBackendOptions& o) : options_(o) {}
  ~NbdBackend() override {
    for (nbd_handle* h : all_) {
      if (h != nullptr) nbd_close(h);
    }
    MutexLock lock(&fence_mu_);
    for (const Draining& d : draining_) nbd_close(d.h);
  }

  absl::Status Start() {
    int connections = options_.connections;
    for (int i = 0; i < connections; ++i) {
      absl::StatusOr<nbd_handle*> h = Connect();
      if (!h.ok()) return h.status();
      all_.push_back(*h);
      MutexLock lock(&mu_);
      free_.push_back(i);
      // Requests spread over several connections only where the server promises that they see
      // each other's writes and flushes (NBD_FLAG_CAN_MULTI_CONN).
      if (i == 0 && connections > 1 && nbd_can_multi_conn(*h) != 1) {
        TMEM_LOG(Info) << options_.uri << " does not offer multi-conn: one connection";
        connections = 1;
      }
    }
    nbd_handle* h = all_[0];
    const int64_t size = nbd_get_size(h);
    if (size < 0) return LastError("get size of " + options_.uri);
    size_ = static_cast<uint64_t>(size);
    caps_.flush = nbd_can_flush(h) == 1;
    caps_.fua = nbd_can_fua(h) == 1;
    caps_.trim = nbd_can_trim(h) == 1;
    caps_.zero = nbd_can_zero(h) == 1;
    // Flush goes to every connection, so it covers writes made through any of them.
    caps_.multi_conn = true;
    if (!caps_.flush) {
      TMEM_LOG(Warning) << options_.uri << " cannot FLUSH: writes reach it with no promise of durability";
    }
    caps_.read_only = options_.read_only || nbd_is_read_only(h) == 1;
    return absl::OkStatus();
  }

  uint64_t size() const override { return size_; }
  BackendCaps caps() const override { return caps_; }

  absl::Status Pread(void* buf, uint32_t len, uint64_t offset) override {
    return Run("pread", kRead,
               [&](nbd_handle* h) { return Await(h, nbd_aio_pread(h, buf, len, offset, NBD_NULL_COMPLETION, 0)); });
  }
  absl::Status Pwrite(const void* buf, uint32_t len, uint64_t offset, bool fua) override {
    const uint32_t flags = fua && caps_.fua ? LIBNBD_CMD_FLAG_FUA : 0;
    // libnbd reads the payload until the command completes, which for a request cut off by its
    // timeout is after this call returned: the fence keeps this copy alive as long as the handle.
    auto payload = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(buf),
                                                          static_cast<const uint8_t*>(buf) + len);
    absl::Status s = Run(
        "pwrite", kWrite,
        [&](nbd_handle* h) {
          return Await(h, nbd_aio_pwrite(h, payload->data(), len, offset, NBD_NULL_COMPLETION, flags));
        },
        payload);
    if (s.ok() && fua && !caps_.fua) return Flush();
    return s;
  }
  absl::Status Flush() override {
    if (!caps_.flush) return absl::OkStatus();
    // Every connection: the remote server may not promise that one flush covers the others.
    for (size_t i = 0; i < all_.size(); ++i) {
      {
        MutexLock lock(&mu_);
        auto it = std::find(free_.begin(), free_.end(), i);
        while (it == free_.end()) {
          free_cv_.Wait(&mu_);
          it = std::find(free_.begin(), free_.end(), i);
        }
        free_.erase(it);
      }
      absl::Status s =
          RunOn(i, "flush", kRead, [&](nbd_handle* h) { return Await(h, nbd_aio_flush(h, NBD_NULL_COMPLETION, 0)); });
      MutexLock lock(&mu_);
      free_.push_back(i);
      free_cv_.SignalAll();
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  absl::Status Trim(uint64_t offset, uint64_t len, bool fua) override {
    if (!caps_.trim) return absl::OkStatus();
    const uint32_t flags = fua && caps_.fua ? LIBNBD_CMD_FLAG_FUA : 0;
    absl::Status st = Run("trim", kWrite, [&](nbd_handle* h) {
      return Await(h, nbd_aio_trim(h, len, offset, NBD_NULL_COMPLETION, flags));
    });
    if (st.ok() && fua && !caps_.fua) return Flush();
    return st;
  }
  absl::Status Zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    if (!caps_.zero) return ZeroByWriting(*this, offset, len, fua);
    uint32_t flags = (fua && caps_.fua ? LIBNBD_CMD_FLAG_FUA : 0) | (may_trim ? 0 : LIBNBD_CMD_FLAG_NO_HOLE);
    absl::Status st = Run("zero", kWrite, [&](nbd_handle* h) {
      return Await(h, nbd_aio_zero(h, len, offset, NBD_NULL_COMPLETION, flags));
    });
    if (st.ok() && fua && !caps_.fua) return Flush();
    return st;
  }
  std::string Describe() const override { return options_.uri; }

 private:
  absl::StatusOr<nbd_handle*> Connect() {
    absl::Status last;
    for (int attempt = 0; attempt <= options_.reconnect_attempts; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(options_.reconnect_delay_ms));
      nbd_handle* h = nbd_create();
      if (h == nullptr) return LastError("nbd_create");
      // Asynchronous, so that a server that accepts but never answers costs a bounded time.
      if (nbd_aio_connect_uri(h, options_.uri.c_str()) == 0) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.connect_timeout_ms);
        while (nbd_aio_is_connecting(h) == 1 && std::chrono::steady_clock::now() < deadline) {
          if (nbd_poll(h, 100) < 0) break;
        }
        if (nbd_aio_is_ready(h) == 1) return h;
        last = nbd_aio_is_connecting(h) == 1
                   ? absl::DeadlineExceededError(absl::StrCat("connect to ", options_.uri, ": no answer within ",
                                                              options_.connect_timeout_ms, " ms"))
                   : LastError("connect to " + options_.uri);
      } else {
        last = LastError("connect to " + options_.uri);
      }
      nbd_close(h);
    }
    return last;
  }

  // Waits for command `cookie` on `h` until the request timeout: 0 when it succeeded, -1 with
  // libnbd's error set otherwise. A timeout kills the connection (the caller reconnects).
  int Await(nbd_handle* h, int64_t cookie) {
    if (cookie < 0) return -1;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.request_timeout_ms);
    while (true) {
      const int done = nbd_aio_command_completed(h, static_cast<uint64_t>(cookie));
      if (done == 1) return 0;
      if (done < 0) return -1;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        // NBD_CMD_DISC, without waiting: the server answers it by finishing every request it
        // holds and closing the connection, which the fence below waits for.
        nbd_aio_disconnect(h, 0);
        t_request_timed_out = true;
        return -1;
      }
      if (nbd_poll(h, static_cast<int>(std::min<int64_t>(left.count(), 1000))) < 0) return -1;
    }
  }

  enum Kind { kRead, kWrite };  // kWrite: a request that changes the store (write, trim, zero)

  // Runs `op` on a free handle; a dead connection is replaced and the request tried once more
  // (a write-type request only when it cannot have reached the server: see RunOn).
  // `payload`: what a write-type request sends, kept alive with its handle if the request is
  // cut off (libnbd may still be sending it).
  template <typename Op>
  absl::Status Run(const char* what, Kind kind, Op op, std::shared_ptr<const void> payload = nullptr) {
    size_t i;
    {
      MutexLock lock(&mu_);
      while (free_.empty()) free_cv_.Wait(&mu_);
      i = free_.back();
      free_.pop_back();
    }
    absl::Status s = RunOn(i, what, kind, op, std::move(payload));
    MutexLock lock(&mu_);
    free_.push_back(i);
    free_cv_.SignalAll();
    return s;
  }

  // The write-back fence. A write-type request whose connection timed out or died got no reply:
  // it may still land on the store, later than anything sent after it. Until it can no longer
  // land, no write-type request goes out (they fail with Unavailable; a cache keeps the lines
  // dirty and its migration tries again). It can no longer land once its connection, sent
  // NBD_CMD_DISC, was closed by the server: the protocol makes the server finish every request
  // it holds before it closes after a DISC. A connection that died instead (reset, or no clean
  // close) proves nothing; it holds the fence for fence_timeout_ms, then the fence lifts with a
  // warning (counted).
  struct Draining {
    nbd_handle* h;
    std::chrono::steady_clock::time_point since;
    std::shared_ptr<const void> payload;  // freed after nbd_close(h)
  };

  absl::Status AwaitFence(const char* what) ABSL_LOCKS_EXCLUDED(fence_mu_) {
    if (!fenced_.load(std::memory_order_acquire)) return absl::OkStatus();
    MutexLock lock(&fence_mu_);
    const auto wait_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.fence_wait_ms);
    while (!DrainLocked()) {
      if (std::chrono::steady_clock::now() >= wait_until) {
        return absl::UnavailableError(
            absl::StrCat(what, " on ", options_.uri, ": held back: an earlier request in doubt may still land"));
      }
      fence_mu_.Unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      fence_mu_.Lock();
    }
    return absl::OkStatus();
  }

  // One look at the connections behind the fence, without blocking: closes those that settled;
  // true (and the fence lifted) once none is left.
  bool DrainLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(fence_mu_) {
    {
      const auto now = std::chrono::steady_clock::now();
      for (auto it = draining_.begin(); it != draining_.end();) {
        nbd_handle* h = it->h;
        if (nbd_aio_is_closed(h) == 1) {
          TMEM_LOG(Info) << options_.uri << ": the connection of a request in doubt closed cleanly after "
                         << "NBD_CMD_DISC; writes to the store go on";
          nbd_close(h);
          it = draining_.erase(it);
          continue;
        }
        if (now - it->since >= std::chrono::milliseconds(options_.fence_timeout_ms)) {
          fence_expired_.fetch_add(1, std::memory_order_relaxed);
          TMEM_LOG(Warning) << options_.uri << ": a write in doubt on a connection that "
                            << (nbd_aio_is_dead(h) == 1 ? "died" : "never closed") << " held writes back for "
                            << options_.fence_timeout_ms << " ms (fence_timeout_ms); going on without proof "
                            << "that it can no longer land";
          nbd_close(h);
          it = draining_.erase(it);
          continue;
        }
        if (nbd_aio_is_dead(h) != 1) nbd_poll(h, 0);  // let the DISC go out and the close come in
        ++it;
      }
    }
    if (!draining_.empty()) return false;
    fenced_.store(false, std::memory_order_release);
    return true;
  }

  // Puts `h`, whose write-type request got no reply, behind the fence (it owns `h` from now).
  void Fence(nbd_handle* h, std::shared_ptr<const void> payload) ABSL_LOCKS_EXCLUDED(fence_mu_) {
    MutexLock lock(&fence_mu_);
    if (nbd_aio_is_dead(h) != 1 && nbd_aio_is_closed(h) != 1) nbd_aio_disconnect(h, 0);
    draining_.push_back(Draining{h, std::chrono::steady_clock::now(), std::move(payload)});
    fences_.fetch_add(1, std::memory_order_relaxed);
    fenced_.store(true, std::memory_order_release);
  }

  // The caller has borrowed handle `i`: no other thread uses or replaces it meanwhile.
  template <typename Op>
  absl::Status RunOn(size_t i, const char* what, Kind kind, Op op, std::shared_ptr<const void> payload = nullptr) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (kind == kWrite) TMEM_RETURN_IF_ERROR(AwaitFence(what));
      nbd_handle* h = all_[i];
      if (h != nullptr && op(h) == 0) return absl::OkStatus();
      const int err = h != nullptr ? nbd_get_errno() : ENOTCONN;
      absl::Status s =
          h != nullptr ? LastError(absl::StrCat(what, " on ", options_.uri)) : absl::UnavailableError("no connection");
      const bool timed_out = std::exchange(t_request_timed_out, false);
      const bool connection_lost = h == nullptr || timed_out || nbd_aio_is_dead(h) == 1 || nbd_aio_is_closed(h) == 1 ||
                                   err == ENOTCONN || err == ESHUTDOWN || err == ECONNRESET || err == EPIPE;
      if (!connection_lost) return s;  // a plain I/O error from the remote server
      TMEM_LOG_RATE_LIMITED(Warning) << "connection " << i << " to " << options_.uri << " is gone (" << s
                                     << "); reconnecting";
      // A write-type request that may have reached the server is not sent again: the fence
      // keeps every later write back until this one can no longer land.
      const bool in_doubt = kind == kWrite && h != nullptr;
      if (in_doubt) {
        all_[i] = nullptr;
        Fence(h, payload);
      }
      absl::StatusOr<nbd_handle*> fresh = Connect();
      if (!fresh.ok()) {
        return absl::UnavailableError(
            absl::StrCat(what, " on ", options_.uri, ": cannot reconnect: ", fresh.status().message()));
      }
      if (h != nullptr && !in_doubt) nbd_close(h);
      all_[i] = *fresh;
      if (in_doubt) {
        return absl::UnavailableError(absl::StrCat(what, " on ", options_.uri, " got no reply",
                                                   timed_out ? " within request_timeout_ms" : "",
                                                   "; not sent again (it may still land)"));
      }
    }
    return absl::UnavailableError(absl::StrCat(what, " on ", options_.uri, " failed after reconnecting"));
  }

 public:
  std::string HealthProblem() const override {
    if (!fenced_.load(std::memory_order_acquire)) return "";
    // No write may come to lift the fence (a client that stopped writing after its EIO): look
    // at the connections behind it here too, without waiting for a writer that holds the lock.
    if (fence_mu_.TryLock()) {
      const bool lifted = DrainLocked();
      fence_mu_.Unlock();
      if (lifted) return "";
    }
    return absl::StrCat("writes to ", options_.uri,
                        " are held back: an earlier write got no reply and may still land (backend fence)");
  }
  void VisitStats(StatsVisitor& v, const StatLabels& labels) const override {
    v.Counter("backend_fences", "Write-type requests to a remote store that got no reply, holding later writes back",
              fences_.load(std::memory_order_relaxed), labels);
    v.Counter("backend_fences_expired", "Fences lifted by fence_timeout_ms without proof (the connection died)",
              fence_expired_.load(std::memory_order_relaxed), labels);
    v.Gauge("backend_fenced", "1 while writes to the remote store are held back", fenced_.load() ? 1 : 0, labels);
  }

 private:
  const NbdBackendOptions options_;
  uint64_t size_ = 0;
  BackendCaps caps_;
  std::vector<nbd_handle*> all_;
  Mutex mu_;
  CondVar free_cv_;
  std::vector<size_t> free_ ABSL_GUARDED_BY(mu_);
  // The fence (AwaitFence). Lock order: a borrowed handle, then fence_mu_ (a leaf besides libnbd).
  // Mutable: the health probe (const) may lift the fence.
  mutable Mutex fence_mu_;
  mutable std::vector<Draining> draining_ ABSL_GUARDED_BY(fence_mu_);
  mutable std::atomic<bool> fenced_{false};  // !draining_.empty(), for the fast path
  std::atomic<uint64_t> fences_{0};
  mutable std::atomic<uint64_t> fence_expired_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlockBackend>> OpenNbdBackend(const NbdBackendOptions& options) {
  if (options.connections < 1 || options.connections > 64) {
    return absl::InvalidArgumentError("NBD backend connections: want 1 to 64");
  }
  auto b = std::make_unique<NbdBackend>(options);
  if (absl::Status s = b->Start(); !s.ok()) return s;
  return std::unique_ptr<BlockBackend>(std::move(b));
}

}  // namespace tmem::backend
