// The transmission phase: each connection's threads take requests off the socket in turn, run
// them in parallel and send replies in any order; replies that complete while another is being
// sent go out together with it. For a backend that buffers writes, small reads and writes run
// in batches: the thread that reads one runs it on the spot, still holding the socket, then the
// small ones already in the read buffer behind it, and sends all their replies in one write.
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "server/nbd/gather.h"
#include "server/nbd/handshake.h"
#include "server/nbd/nbd_server.h"
#include "server/nbd/protocol.h"
#include "server/nbd/socket_io.h"

namespace tmem::nbd {
namespace {

// Sleeps `us` microseconds with this thread's timer slack at 1 µs (the default, 50 µs, would
// more than double a short gather wait).
void SleepPrecisely(int us) {
  thread_local bool slack_set = false;
  if (!slack_set) {
    ::prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    slack_set = true;
  }
  timespec ts{0, static_cast<long>(us) * 1000};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

class Connection {
 public:
  Connection(NbdServer& server, int fd, Transport& transport, Export& exp, bool structured, bool read_only)
      : server_(server),
        fd_(fd),
        t_(transport),
        exp_(exp),
        structured_(structured),
        size_(exp.backend->size()),
        tflags_(exp.TransmissionFlags(read_only)),
        in_(transport) {}

  // Serves requests until DISC, EOF, a protocol violation or server shutdown; returns when every
  // request taken in has been answered.
  void Run();

 private:
  struct Pending {
    Request req;
    std::unique_ptr<uint8_t[]> payload;  // WRITE data (not zero-filled first)
  };
  void ServeRequests();
  // Runs `p` and the small requests buffered behind it (TakeBuffered) on this thread, through
  // PwriteBuffered / PreadBuffered, and sends their replies in one write. False when all ran;
  // true when `p` holds one that would wait, to be run after letting go of the socket.
  bool RunBuffered(Pending& p, std::vector<uint8_t>& replies) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  // The error (and why) a request gets without reaching the backend; 0 when it is valid.
  uint32_t Check(const Request& r, std::string* why) const;
  // Takes the next request into `p` when it is a small read or write, whole in the read buffer,
  // valid, and admitted without waiting; false (nothing taken) otherwise.
  bool TakeBuffered(Pending& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  // Payload bytes a request counts against max_bytes_in_flight.
  static uint64_t InFlightBytes(const Request& r, uint32_t error) {
    return (error == 0 && (r.type == kCmdRead || r.type == kCmdWrite)) ? r.length : 0;
  }
  // Admit without waiting: false at the limits.
  bool TryAdmit(uint64_t bytes);
  // Whether `bytes` more would pass the connection's in-flight limits.
  bool AtLimit(uint64_t bytes) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts one more request thread if none is free to read the next request.
  void MaybeAddThread() ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  // Runs the request and sends its reply, or appends the reply to `replies` when given. With
  // `buffered` (a read or write): through PreadBuffered / PwriteBuffered, and false, with
  // nothing answered, when that would wait.
  bool Execute(Pending& p, std::vector<uint8_t>* replies = nullptr, bool buffered = false);
  // Sends the reply of `req`: success (error 0) with `data` for reads, or an error; appends it
  // to `replies` instead when given.
  void SendReply(const Request& req, uint32_t error, const uint8_t* data, uint32_t len, const std::string& message,
                 std::vector<uint8_t>* replies = nullptr);
  // Blocks while the connection is at its in-flight limits.
  void Admit(uint64_t bytes);
  void Done(uint64_t bytes, int requests = 1);
  static int CommandIndex(uint16_t type) { return type < Export::kCommands - 1 ? type : Export::kCommands - 1; }

  NbdServer& server_;
  const int fd_;
  Transport& t_;
  Export& exp_;
  const bool structured_;
  const uint64_t size_;  // the export's size and transmission flags, fixed for the connection
  const uint16_t tflags_;

  Mutex read_mu_;  // one thread at a time takes a request off the socket
  bool reading_done_ ABSL_GUARDED_BY(read_mu_) = false;
  BufferedReader in_ ABSL_GUARDED_BY(read_mu_);
  std::vector<std::thread> helpers_ ABSL_GUARDED_BY(read_mu_);  // request threads besides the first
  std::atomic<int> waiting_readers_{0};  // threads waiting for read_mu_, i.e. free for the next request
  GatherPolicy gather_ ABSL_GUARDED_BY(read_mu_);
  uint32_t taken_since_read_ ABSL_GUARDED_BY(read_mu_) = 0;  // requests taken since the last read from the socket
  // Replies: one thread at a time is on the socket (sending_); small replies that complete
  // meanwhile are queued and sent by it in one write before it lets go.
  static constexpr size_t kCombineMaxBytes = 64 << 10;
  void Send(iovec* iov, int n);
  Mutex reply_mu_;
  CondVar reply_cv_;
  bool sending_ ABSL_GUARDED_BY(reply_mu_) = false;
  std::vector<uint8_t> queued_ ABSL_GUARDED_BY(reply_mu_);
  std::vector<uint8_t> batch_;  // used only by the thread on the socket (sending_ set by it)

  Mutex mu_;
  CondVar cv_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // a reply could not be sent
};

bool Connection::AtLimit(uint64_t bytes) const {
  const auto& o = server_.options();
  return in_flight_ >= o.max_requests_in_flight || bytes_in_flight_ + bytes > o.max_bytes_in_flight;
}

void Connection::Admit(uint64_t bytes) {
  {
    MutexLock lock(&mu_);
    while (in_flight_ > 0 && AtLimit(bytes)) cv_.Wait(&mu_);  // one request alone is always taken
    ++in_flight_;
    bytes_in_flight_ += bytes;
  }
  server_.AdmitBytes(bytes);  // and the server's total (every connection's)
}

bool Connection::TryAdmit(uint64_t bytes) {
  MutexLock lock(&mu_);
  if (AtLimit(bytes) || !server_.TryAdmitBytes(bytes)) return false;
  ++in_flight_;
  bytes_in_flight_ += bytes;
  return true;
}

void Connection::Done(uint64_t bytes, int requests) {
  server_.ReleaseBytes(bytes);
  MutexLock lock(&mu_);
  in_flight_ -= requests;
  bytes_in_flight_ -= bytes;
  cv_.SignalAll();
}

void Connection::SendReply(const Request& req, uint32_t error, const uint8_t* data, uint32_t len,
                           const std::string& message, std::vector<uint8_t>* replies) {
  uint8_t h[32];
  iovec iov[3];
  int n = 0;
  if (!structured_) {
    Put32(h, kSimpleReplyMagic);
    Put32(h + 4, error);
    Put64(h + 8, req.cookie);
    iov[n++] = {h, 16};
    // A failed read sends no data (simple replies cannot carry a partial read).
    if (error == 0 && len > 0) iov[n++] = {const_cast<uint8_t*>(data), len};
  } else if (error != 0) {
    const uint16_t mlen = static_cast<uint16_t>(std::min<size_t>(message.size(), 4096));
    Put32(h, kStructuredReplyMagic);
    Put16(h + 4, kReplyFlagDone);
    Put16(h + 6, kReplyTypeError);
    Put64(h + 8, req.cookie);
    Put32(h + 16, 6u + mlen);
    Put32(h + 20, error);
    Put16(h + 24, mlen);
    iov[n++] = {h, 26};
    if (mlen > 0) iov[n++] = {const_cast<char*>(message.data()), mlen};
  } else if (req.type == kCmdRead && len > 0) {
    Put32(h, kStructuredReplyMagic);
    Put16(h + 4, kReplyFlagDone);
    Put16(h + 6, kReplyTypeOffsetData);
    Put64(h + 8, req.cookie);
    Put32(h + 16, 8u + len);
    Put64(h + 20, req.offset);
    iov[n++] = {h, 28};
    iov[n++] = {const_cast<uint8_t*>(data), len};
  } else {
    Put32(h, kStructuredReplyMagic);
    Put16(h + 4, kReplyFlagDone);
    Put16(h + 6, kReplyTypeNone);
    Put64(h + 8, req.cookie);
    Put32(h + 16, 0);
    iov[n++] = {h, 20};
  }
  if (replies != nullptr) {
    for (int i = 0; i < n; ++i) {
      const auto* b = static_cast<const uint8_t*>(iov[i].iov_base);
      replies->insert(replies->end(), b, b + iov[i].iov_len);
    }
    return;
  }
  Send(iov, n);
}

void Connection::Send(iovec* iov, int n) {
  size_t total = 0;
  for (int i = 0; i < n; ++i) total += iov[i].iov_len;
  {
    MutexLock lock(&reply_mu_);
    if (sending_ && total <= kCombineMaxBytes) {
      // The thread on the socket sends this too before it lets go: no wait, and one send
      // (one trip through the network stack, one wakeup of the client) for many replies.
      for (int i = 0; i < n; ++i) {
        const auto* b = static_cast<const uint8_t*>(iov[i].iov_base);
        queued_.insert(queued_.end(), b, b + iov[i].iov_len);
      }
      return;
    }
    while (sending_) reply_cv_.Wait(&reply_mu_);  // a large reply is not copied: its turn comes
    sending_ = true;
  }
  bool ok = WriteFullV(t_, iov, n);
  // Send what other threads queued meanwhile, until nothing is left. The two vectors trade
  // places, so their memory is reused from batch to batch.
  while (true) {
    {
      MutexLock lock(&reply_mu_);
      if (queued_.empty()) {
        sending_ = false;
        reply_cv_.SignalAll();
        break;
      }
      batch_.swap(queued_);
    }
    if (ok) ok = WriteFull(t_, batch_.data(), batch_.size());
    batch_.clear();
  }
  if (!ok) {
    MutexLock lock(&mu_);
    broken_ = true;
  }
}

bool Connection::Execute(Pending& p, std::vector<uint8_t>* replies, bool buffered) {
  const Request& r = p.req;
  const auto t0 = std::chrono::steady_clock::now();
  const int c = CommandIndex(r.type);
  backend::BlockBackend& b = *exp_.backend;
  const bool fua = (r.flags & kCmdFlagFua) != 0;
  absl::Status st;
  std::unique_ptr<uint8_t[]> data;
  uint32_t data_len = 0;
  if (server_.stopping()) {
    st = absl::CancelledError("server is shutting down");
  } else {
    switch (r.type) {
      case kCmdRead:
        data.reset(new uint8_t[r.length]);
        data_len = r.length;
        if (buffered) {
          absl::StatusOr<backend::BufferedOutcome> done = b.PreadBuffered(data.get(), r.length, r.offset);
          if (done.ok() && *done == backend::BufferedOutcome::kWouldWait) return false;
          st = done.status();
        } else {
          st = b.Pread(data.get(), r.length, r.offset);
        }
        if (st.ok()) exp_.bytes_read.fetch_add(r.length, std::memory_order_relaxed);
        break;
      case kCmdWrite:
        if (buffered) {
          absl::StatusOr<backend::BufferedOutcome> done = b.PwriteBuffered(p.payload.get(), r.length, r.offset);
          if (done.ok() && *done == backend::BufferedOutcome::kWouldWait) return false;
          st = done.status();
        } else {
          st = b.Pwrite(p.payload.get(), r.length, r.offset, fua);
        }
        if (st.ok()) exp_.bytes_written.fetch_add(r.length, std::memory_order_relaxed);
        break;
      case kCmdFlush:
        st = b.Flush();
        break;
      case kCmdTrim:
        st = b.Trim(r.offset, r.length, fua);
        break;
      case kCmdWriteZeroes:
        st = b.Zero(r.offset, r.length, (r.flags & kCmdFlagNoHole) == 0, fua);
        break;
      default:
        st = absl::InvalidArgumentError("unknown command");
    }
  }
  const uint32_t error = NbdErrorOf(st);
  if (!st.ok()) {
    exp_.errors[c].fetch_add(1, std::memory_order_relaxed);
    if (error == kEio) {
      TMEM_LOG_RATE_LIMITED(Warning) << "export " << exp_.name << ": " << CommandName(r.type) << " at " << r.offset
                                     << " failed: " << st;
    }
  }
  SendReply(r, error, data.get(), st.ok() ? data_len : 0, std::string(st.message()), replies);
  // A reply collected in `replies` is timed by the caller once it has been sent.
  if (replies == nullptr) {
    exp_.latency[c].Record(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return true;
}

void Connection::Run() {
  ServeRequests();
  // Reading is over (reading_done_), so no thread is started any more: join them all.
  std::vector<std::thread> helpers;
  {
    MutexLock rl(&read_mu_);
    helpers.swap(helpers_);
  }
  for (auto& t : helpers) t.join();
}

void Connection::MaybeAddThread() {
  // Another thread only when every thread is busy with a request: an idle connection costs one.
  const int limit =
      std::max(1, std::min(server_.options().threads_per_connection, server_.options().max_requests_in_flight));
  if (waiting_readers_.load(std::memory_order_relaxed) > 0 || 1 + static_cast<int>(helpers_.size()) >= limit) return;
  try {
    helpers_.emplace_back([this] { ServeRequests(); });
  } catch (const std::system_error& e) {
    // Out of threads: the connection goes on with those it has.
    TMEM_LOG_RATE_LIMITED(Warning) << "export " << exp_.name << ": cannot start a request thread: " << e.what();
  }
}

uint32_t Connection::Check(const Request& r, std::string* why) const {
  const bool writes = r.type == kCmdWrite || r.type == kCmdTrim || r.type == kCmdWriteZeroes;
  uint16_t allowed = kCmdFlagFua;
  if (r.type == kCmdWriteZeroes) allowed |= kCmdFlagNoHole;
  if (r.type != kCmdRead && r.type != kCmdWrite && r.type != kCmdFlush && r.type != kCmdTrim &&
      r.type != kCmdWriteZeroes) {
    *why = "unknown command " + std::to_string(r.type);
    return kEinval;
  }
  if ((r.flags & ~allowed) != 0) return *why = "unsupported command flags", kEinval;
  if (r.type == kCmdFlush && (r.offset != 0 || r.length != 0)) return *why = "flush with an offset or length", kEinval;
  if (r.type != kCmdFlush && (r.offset > size_ || r.length > size_ - r.offset)) {
    *why = "request beyond the end of the export";
    return writes ? kEnospc : kEinval;
  }
  if (r.type == kCmdRead && r.length > kMaxPayload) return *why = "read larger than the maximum payload", kEoverflow;
  if (writes && (tflags_ & kFlagReadOnly) != 0) return *why = "read-only export", kEperm;
  if ((r.type == kCmdTrim && (tflags_ & kFlagSendTrim) == 0) ||
      (r.type == kCmdWriteZeroes && (tflags_ & kFlagSendWriteZeroes) == 0)) {
    return *why = "command not offered for this export", kEinval;
  }
  return 0;
}

namespace {
// A run: up to this many small requests (reads and writes of at most kRunRequestBytes, without
// flags) done by the reading thread itself.
constexpr size_t kMaxRun = 32;
constexpr uint32_t kRunRequestBytes = 64 << 10;
bool Runnable(const Request& r) {
  return (r.type == kCmdWrite || r.type == kCmdRead) && r.flags == 0 && r.length <= kRunRequestBytes;
}
}  // namespace

bool Connection::TakeBuffered(Pending& p) {
  const uint8_t* h = in_.Peek(kRequestBytes);
  Request r;
  if (h == nullptr || !ParseRequest(h, &r) || !Runnable(r)) return false;  // the usual path takes it
  const uint32_t payload = r.type == kCmdWrite ? r.length : 0;
  std::string why;
  if (in_.Peek(kRequestBytes + payload) == nullptr || Check(r, &why) != 0 || !TryAdmit(r.length)) return false;
  // All of it is in the buffer: neither read can fail or block.
  uint8_t skip[kRequestBytes];
  in_.Read(skip, sizeof(skip));
  p.req = r;
  // An empty write too gets a buffer: backends never see a null one.
  p.payload.reset(r.type == kCmdWrite ? new uint8_t[payload] : nullptr);
  if (payload > 0) in_.Read(p.payload.get(), payload);
  exp_.requests[r.type].fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool Connection::RunBuffered(Pending& p, std::vector<uint8_t>& replies) {
  const auto t0 = std::chrono::steady_clock::now();
  replies.clear();
  uint16_t types[kMaxRun];
  size_t ran = 0;
  uint64_t bytes = 0;
  bool declined = false;
  while (true) {
    if (!Execute(p, &replies, /*buffered=*/true)) {
      declined = true;
      break;
    }
    types[ran++] = p.req.type;
    bytes += p.req.length;
    if (ran == kMaxRun || !TakeBuffered(p)) break;
  }
  taken_since_read_ += static_cast<uint32_t>(ran + (declined ? 1 : 0));
  if (ran >= 2) exp_.batched_requests.fetch_add(ran, std::memory_order_relaxed);  // counted before it is seen
  if (!replies.empty()) {
    iovec iov{replies.data(), replies.size()};
    Send(&iov, 1);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (size_t i = 0; i < ran; ++i) exp_.latency[types[i]].Record(secs);
  if (ran > 0) Done(bytes, static_cast<int>(ran));
  return declined;
}

// Each of the connection's threads takes the next request off the socket (under read_mu_),
// runs it and sends its reply, so that requests run in parallel and replies leave in the order
// they finish, with no handoff between threads. For a backend with buffered writes, a small
// read or write runs on the spot with the small ones buffered behind it (RunBuffered).
void Connection::ServeRequests() {
  const bool batching = exp_.backend->caps().buffered_writes;
  const int gather_us = batching ? server_.options().gather_us : 0;
  std::vector<uint8_t> replies;
  while (true) {
    Pending p;
    Request& r = p.req;
    uint32_t error = 0;
    std::string why;
    {
      waiting_readers_.fetch_add(1, std::memory_order_relaxed);
      MutexLock rl(&read_mu_);
      waiting_readers_.fetch_sub(1, std::memory_order_relaxed);
      if (reading_done_) return;
      {
        MutexLock lock(&mu_);
        if (broken_) {
          reading_done_ = true;
          return;
        }
      }
      uint8_t h[kRequestBytes];
      if (gather_us > 0 && in_.Peek(kRequestBytes) == nullptr) {  // this read goes to the socket
        if (gather_.BeforeRead(taken_since_read_)) {
          exp_.gathers.fetch_add(1, std::memory_order_relaxed);
          SleepPrecisely(gather_us);
        }
        taken_since_read_ = 0;
      }
      if (!in_.Read(h, sizeof(h))) {
        reading_done_ = true;
        return;
      }
      if (!ParseRequest(h, &r)) {
        TMEM_LOG_RATE_LIMITED(Warning) << "export " << exp_.name << ": bad request magic; disconnecting";
        reading_done_ = true;
        ::shutdown(fd_, SHUT_RD);
        return;
      }
      const int c = CommandIndex(r.type);
      exp_.requests[c].fetch_add(1, std::memory_order_relaxed);
      if (r.type == kCmdDisc) {
        reading_done_ = true;
        return;
      }
      if (r.type == kCmdWrite && r.length > kMaxPayload) {
        // The payload cannot be taken in: a protocol violation, so a hard disconnect.
        TMEM_LOG_RATE_LIMITED(Warning) << "export " << exp_.name << ": write of " << r.length
                                       << " bytes exceeds the maximum payload; disconnecting";
        reading_done_ = true;
        ::shutdown(fd_, SHUT_RD);
        return;
      }
      // Validate at the edge: an error is answered without touching the backend.
      error = Check(r, &why);
      if (error != 0) exp_.errors[c].fetch_add(1, std::memory_order_relaxed);
      Admit(InFlightBytes(r, error));
      if (r.type == kCmdWrite) {
        bool got;
        if (error == 0) {
          p.payload.reset(new uint8_t[r.length]);
          got = in_.Read(p.payload.get(), r.length);
        } else {
          got = in_.Skip(r.length);
        }
        if (!got) {
          reading_done_ = true;
          Done(InFlightBytes(r, error));
          return;
        }
      }
      if (batching && error == 0 && Runnable(r)) {
        // Run here, still holding the socket: no other thread has to wake up to read on, and the
        // replies leave in one send. A request that would wait runs after letting go of it.
        if (!RunBuffered(p, replies)) continue;
      } else {
        ++taken_since_read_;
      }
      MaybeAddThread();
    }
    if (error != 0) {
      SendReply(r, error, nullptr, 0, why);
    } else {
      Execute(p);
    }
    Done(InFlightBytes(r, error));
  }
}

}  // namespace

void ServeConnection(NbdServer& server, int fd) {
  Negotiated n = Handshake(server, fd);
  if (n.exp == nullptr) return;
  server.HandshakeDone(fd);
  n.exp->connections_total.fetch_add(1, std::memory_order_relaxed);
  n.exp->connections_open.fetch_add(1, std::memory_order_relaxed);
  Connection c(server, fd, *n.transport, *n.exp, n.structured, n.read_only);
  c.Run();
  n.exp->connections_open.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace tmem::nbd
