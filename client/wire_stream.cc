#include "client/wire_stream.h"

#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/wire_ops.h"
#include "server/wire/wire_codec.h"

namespace tmem::client {
namespace {

namespace w = ::tmem::wire;

}  // namespace

WireStream::WireStream(WireStreamOptions options) : options_(std::move(options)) {
  {
    MutexLock lock(&mu_);
    last_progress_ = std::chrono::steady_clock::now();
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  {
    MutexLock lock(&read_mu_);
    rbuf_.resize(512 << 10);
  }
  writer_ = std::thread([this] { WriterLoop(); });
}

WireStream::~WireStream() {
  Cancel();
  writer_.join();  // the writer starts the reader and joins it before it returns
  if (session_ != nullptr) gnutls_deinit(static_cast<gnutls_session_t>(session_));
  if (fd_ >= 0) ::close(fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::shared_ptr<PageStream::Op> WireStream::Submit(tmem::v1::SessionRequest request) {
  return SubmitOp(std::make_shared<Op>(), std::move(request));
}

std::shared_ptr<PageStream::Op> WireStream::SubmitGet(tmem::v1::SessionRequest request,
                                                      std::vector<std::span<uint8_t>> outputs) {
  auto op = std::make_shared<Op>();
  op->set_outputs(std::move(outputs));
  return SubmitOp(std::move(op), std::move(request));
}

std::optional<uint64_t> WireStream::RegisterLocked(const std::shared_ptr<Op>& op) {
  if (broken_) {
    op->Complete(absl::UnavailableError("wire connection is broken"), nullptr);
    return std::nullopt;
  }
  const uint64_t id = next_id_++;
  if (in_flight_.empty()) last_progress_ = std::chrono::steady_clock::now();
  in_flight_[id] = InFlight{op};
  return id;
}

std::shared_ptr<PageStream::Op> WireStream::SubmitOp(std::shared_ptr<Op> op, tmem::v1::SessionRequest request) {
  MutexLock send(&send_mu_);
  uint64_t id;
  {
    MutexLock lock(&mu_);
    std::optional<uint64_t> got = RegisterLocked(op);
    if (!got.has_value()) return op;
    id = *got;
    request.set_op_id(id);
    if (!ready_) {
      // The writer thread connects first, then sends what waits, in order.
      queue_.emplace_back(id, std::move(request));
      cv_.SignalAll();
      return op;
    }
  }
  send_buf_.clear();
  if (absl::Status s = Encode(request, id, send_buf_); !s.ok()) {
    {
      MutexLock lock(&mu_);
      in_flight_.erase(id);
    }
    CompleteRefused(*op, id, s);
    return op;
  }
  if (!SendAll(send_buf_.data(), send_buf_.size())) Break(absl::UnavailableError("wire connection: send failed"));
  return op;
}

namespace {
int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

bool WireStream::Await(Op& op, std::chrono::steady_clock::time_point deadline) {
  waiters_.fetch_add(1, std::memory_order_acq_rel);
  while (!op.finished()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    // Wakes from here on count: a reader that leaves between our TryLock and our sleep wakes us.
    const uint64_t seen = op.wakes();
    if (readable_.load(std::memory_order_acquire) && read_mu_.TryLock()) {
      // The read role: read until this op's reply came (handing out every other reply met).
      Pump p = Pump::kProgress;
      while (p != Pump::kBroken && !op.finished()) {
        const auto left = deadline - std::chrono::steady_clock::now();
        if (left <= std::chrono::steady_clock::duration::zero()) break;
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
        p = PumpLocked(static_cast<int>(std::min<int64_t>(ms, 100)), /*kickable=*/false);
      }
      read_mu_.Unlock();
      // Another waiter may need the role now.
      if (waiters_.load(std::memory_order_acquire) > 1) WakeWaiters();
      continue;
    }
    // Someone else reads. The idle reader gives way when kicked; a waiter reads until its own
    // reply came, hands this op's reply out if it comes first, and wakes the others when it leaves.
    if (idle_reading_.load(std::memory_order_acquire) && wake_fd_ >= 0) {
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    }
    op.WaitUntilWoken(std::min(deadline, now + std::chrono::milliseconds(2)), seen);
  }
  last_wait_ns_.store(NowNs(), std::memory_order_release);
  waiters_.fetch_sub(1, std::memory_order_acq_rel);
  return op.finished();
}

absl::StatusOr<tmem::v1::SessionResponse> WireStream::Wait(Op& op, std::chrono::steady_clock::time_point deadline) {
  if (Await(op, deadline)) return op.Take();
  // Given up: from now on the reader writes nothing into the op's buffers (unless it finished).
  if (!op.Abandon()) return op.Take();
  bool stalled = false;
  {
    MutexLock lock(&mu_);
    for (auto it = in_flight_.begin(); it != in_flight_.end(); ++it) {
      if (it->second.op.get() == &op) {
        in_flight_.erase(it);
        break;
      }
    }
    stalled = !broken_ && std::chrono::steady_clock::now() - last_progress_ >= std::chrono::milliseconds(100);
  }
  if (stalled) Cancel();
  return absl::DeadlineExceededError("no reply on the wire connection in time");
}

void WireStream::Cancel() { Break(absl::UnavailableError("wire connection cancelled")); }

void WireStream::WakeWaiters() {
  std::vector<std::shared_ptr<Op>> ops;
  {
    MutexLock lock(&mu_);
    ops.reserve(in_flight_.size());
    for (const auto& [id, f] : in_flight_) ops.push_back(f.op);
  }
  for (const auto& op : ops) op->Wake();
}

bool WireStream::broken() const {
  MutexLock lock(&mu_);
  return broken_;
}

uint64_t WireStream::replies() const {
  MutexLock lock(&mu_);
  return replies_;
}

std::string WireStream::tenant() const {
  MutexLock lock(&mu_);
  return tenant_;
}

void WireStream::Break(const absl::Status& why) {
  std::map<uint64_t, InFlight> failed;
  {
    MutexLock lock(&mu_);
    if (!broken_) {
      broken_ = true;
      // Wakes the reader and a writer inside send; the descriptor stays open until the destructor.
      if (connected_) ::shutdown(fd_, SHUT_RDWR);
    }
    failed.swap(in_flight_);
    queue_.clear();
    cv_.SignalAll();
  }
  for (auto& [id, f] : failed) f.op->Complete(why, nullptr);
}

bool WireStream::Connect() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(options_.port);
  if (::getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    Break(absl::UnavailableError(absl::StrCat("cannot resolve ", options_.host)));
    return false;
  }
  const int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  bool ok = fd >= 0;
  if (ok && ::connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    ok = errno == EINPROGRESS;
    if (ok) {
      pollfd p{fd, POLLOUT, 0};
      ok = ::poll(&p, 1, static_cast<int>(options_.connect_timeout_ms)) == 1;
      int err = 0;
      socklen_t len = sizeof(err);
      if (ok) ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
  }
  ::freeaddrinfo(res);
  if (!ok) {
    if (fd >= 0) ::close(fd);
    Break(absl::UnavailableError(absl::StrCat("cannot connect to ", options_.host, ":", options_.port)));
    return false;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  {
    MutexLock lock(&mu_);
    fd_ = fd;
    if (broken_) return false;
    connected_ = true;
  }
  if (options_.tls != nullptr && !StartTls(fd)) return false;
  std::vector<uint8_t> hello;
  w::AppendHello(hello, 0);
  MutexLock send(&send_mu_);  // no one else sends yet; taken for what the sending code requires
  if (!SendAll(hello.data(), hello.size())) {
    Break(absl::UnavailableError("wire connection: HELLO not sent"));
    return false;
  }
  return true;
}

std::shared_ptr<PageStream::Op> WireStream::SubmitPut(uint32_t pool_id, std::span<const PutView> pages) {
  const size_t page = pages.empty() ? 0 : pages[0].page.size();
  bool plain = !pages.empty() && pages.size() <= w::kMaxBatch && page <= w::kMaxPageBytes;
  for (const PutView& p : pages) {
    plain = plain && !p.object.empty() && p.object.size() <= w::kMaxObjectBytes && p.page.size() == page;
  }
  bool ready;
  {
    MutexLock lock(&mu_);
    ready = ready_;
  }
  // Not connected yet (the request must wait in the queue, so it needs its own copy), or
  // something the server would refuse (Encode answers it in the server's words).
  if (!ready || !plain) return PageStream::SubmitPut(pool_id, pages);
  auto op = std::make_shared<Op>();
  MutexLock send(&send_mu_);
  uint64_t id;
  {
    MutexLock lock(&mu_);
    std::optional<uint64_t> got = RegisterLocked(op);
    if (!got.has_value()) return op;
    id = *got;
  }
  // Header and entries in one buffer; each page sent from where it is.
  send_buf_.clear();
  const size_t at = w::BeginRequest(send_buf_, w::Verb::kPut, id, pool_id, static_cast<uint16_t>(pages.size()),
                                    static_cast<uint32_t>(page));
  for (const PutView& p : pages) w::AppendEntry(send_buf_, p.object, p.index);
  const auto body = static_cast<uint32_t>(pages.size() * (sizeof(w::Entry) + page));
  std::memcpy(send_buf_.data() + at + offsetof(w::RequestHeader, body_bytes), &body, sizeof(body));
  send_iov_.clear();
  for (size_t i = 0; i < pages.size(); ++i) {
    uint8_t* entry = send_buf_.data() + sizeof(w::RequestHeader) + i * sizeof(w::Entry);
    if (i == 0) {
      send_iov_.push_back({send_buf_.data(), sizeof(w::RequestHeader) + sizeof(w::Entry)});
    } else {
      send_iov_.push_back({entry, sizeof(w::Entry)});
    }
    send_iov_.push_back({const_cast<uint8_t*>(pages[i].page.data()), page});
  }
  if (!SendAllV(send_iov_.data(), static_cast<int>(send_iov_.size()))) {
    Break(absl::UnavailableError("wire connection: send failed"));
  }
  return op;
}

bool WireStream::SendAll(const uint8_t* data, size_t len) {
  if (records_ != nullptr) {
    iovec iov{const_cast<uint8_t*>(data), len};
    return SealAndSend(&iov, 1, &gathered_);
  }
  while (len > 0) {
    ssize_t n;
    if (session_ != nullptr) {
      n = gnutls_record_send(static_cast<gnutls_session_t>(session_), data, len);
      if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
    } else {
      n = ::send(fd_, data, len, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
    }
    if (n <= 0) return false;
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

void WireStream::WriterLoop() {
  if (Connect()) {
    readable_.store(true, std::memory_order_release);
    WakeWaiters();  // waiters may read now
    reader_ = std::thread([this] { ReaderLoop(); });
    // What was submitted while connecting leaves first, in order; from then on submitters send
    // their requests themselves (SubmitOp), so nothing waits for this thread.
    MutexLock send(&send_mu_);
    std::deque<std::pair<uint64_t, tmem::v1::SessionRequest>> batch;
    {
      MutexLock lock(&mu_);
      batch.swap(queue_);
    }
    send_buf_.clear();
    for (auto& [id, req] : batch) {
      if (absl::Status s = Encode(req, id, send_buf_); !s.ok()) {
        std::shared_ptr<Op> op;
        {
          MutexLock lock(&mu_);
          auto it = in_flight_.find(id);
          if (it != in_flight_.end()) {
            op = std::move(it->second.op);
            in_flight_.erase(it);
          }
        }
        if (op != nullptr) CompleteRefused(*op, id, s);
      }
    }
    if (!send_buf_.empty() && !SendAll(send_buf_.data(), send_buf_.size())) {
      Break(absl::UnavailableError("wire connection: send failed"));
    } else {
      MutexLock lock(&mu_);
      ready_ = true;
    }
  }
  {
    MutexLock lock(&mu_);
    while (!broken_) cv_.Wait(&mu_);
  }
  if (reader_.joinable()) reader_.join();
}

void WireStream::ReaderLoop() {
  while (true) {
    {
      MutexLock lock(&mu_);
      if (broken_) break;
      // Waiters read their own replies; this thread reads only once none came for 2 ms.
      const int64_t idle_ns = NowNs() - last_wait_ns_.load(std::memory_order_acquire);
      if (waiters_.load(std::memory_order_acquire) > 0 || idle_ns < 2'000'000) {
        cv_.WaitFor(&mu_, std::chrono::milliseconds(5));
        continue;
      }
    }
    Pump p;
    {
      MutexLock read(&read_mu_);
      idle_reading_.store(true, std::memory_order_release);
      p = PumpLocked(50, /*kickable=*/true);
      idle_reading_.store(false, std::memory_order_release);
    }
    if (p == Pump::kBroken) break;
    if (waiters_.load(std::memory_order_acquire) > 0) WakeWaiters();
  }
}

WireStream::Pump WireStream::PumpLocked(int timeout_ms, bool kickable) {
  size_t handled = 0;
  if (absl::Status why = HandleRepliesLocked(&handled); !why.ok()) {
    Break(why);
    return Pump::kBroken;
  }
  if (handled > 0) return Pump::kProgress;
  {
    MutexLock lock(&mu_);
    if (broken_) return Pump::kBroken;
  }
  const bool tls_pending =
      records_ != nullptr
          ? TlsRecords::WholeRecord(ahead_.unread()) != 0
          : session_ != nullptr &&
                (gnutls_record_check_pending(static_cast<gnutls_session_t>(session_)) > 0 || ahead_.buffered());
  if (!tls_pending) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int rc = ::poll(fds, kickable && wake_fd_ >= 0 ? 2 : 1, timeout_ms);
    if (rc < 0 && errno != EINTR) {
      Break(absl::UnavailableError(absl::StrCat("wire connection: poll: ", std::strerror(errno))));
      return Pump::kBroken;
    }
    if (kickable && (fds[1].revents & POLLIN)) {
      uint64_t n;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &n, sizeof(n));
    }
    if (rc <= 0 || (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) return Pump::kQuiet;
  }
  if (rstart_ > 0) {
    std::memmove(rbuf_.data(), rbuf_.data() + rstart_, rend_ - rstart_);
    rend_ -= rstart_;
    rstart_ = 0;
  }
  if (rend_ == rbuf_.size()) rbuf_.resize(rbuf_.size() * 2);
  ssize_t n;
  while (true) {
    if (records_ != nullptr) {
      n = OpenRecordsLocked();
    } else if (session_ != nullptr) {
      n = gnutls_record_recv(static_cast<gnutls_session_t>(session_), rbuf_.data() + rend_, rbuf_.size() - rend_);
      if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
    } else {
      n = ::recv(fd_, rbuf_.data() + rend_, rbuf_.size() - rend_, 0);
      if (n < 0 && errno == EINTR) continue;
    }
    break;
  }
  if (n <= 0) {
    Break(absl::UnavailableError("wire connection closed"));
    return Pump::kBroken;
  }
  rend_ += static_cast<size_t>(n);
  if (absl::Status why = HandleRepliesLocked(&handled); !why.ok()) {
    Break(why);
    return Pump::kBroken;
  }
  return Pump::kProgress;
}

absl::Status WireStream::HandleRepliesLocked(size_t* handled) {
  while (true) {
    w::Reply r;
    if (!w::TakeReply(std::span<const uint8_t>(rbuf_.data() + rstart_, rend_ - rstart_), &r)) {
      if (rend_ - rstart_ >= sizeof(w::ReplyHeader)) {
        w::ReplyHeader h;
        std::memcpy(&h, rbuf_.data() + rstart_, sizeof(h));
        if (h.magic != w::kReplyMagic) return absl::UnavailableError("wire connection: not a tmem wire reply");
        // Room for the whole reply (moved to the front before the next read).
        if (sizeof(h) + h.body_bytes > rbuf_.size()) rbuf_.resize(sizeof(h) + h.body_bytes);
      }
      return absl::OkStatus();
    }
    rstart_ += r.bytes;
    ++*handled;
    if (r.header.magic != w::kReplyMagic) return absl::UnavailableError("wire connection: not a tmem wire reply");
    if (r.header.request_id == 0 && r.header.verb == static_cast<uint8_t>(w::Verb::kHello)) {
      if (r.header.status != 0) {
        // The server refused this client: its words, with UNAVAILABLE so that callers treat the
        // server as unreachable (misses and dropped puts).
        return absl::UnavailableError(absl::StrCat("wire HELLO refused (code ", r.header.status,
                                                   "): ", std::string(r.body.begin(), r.body.end())));
      }
      MutexLock lock(&mu_);
      if (r.body.size() >= sizeof(w::HelloReply)) {
        w::HelloReply h;
        std::memcpy(&h, r.body.data(), sizeof(h));
        if (sizeof(h) + h.tenant_bytes <= r.body.size()) {
          tenant_.assign(reinterpret_cast<const char*>(r.body.data() + sizeof(h)), h.tenant_bytes);
        }
      }
      last_progress_ = std::chrono::steady_clock::now();
      continue;
    }
    std::shared_ptr<Op> op;
    {
      MutexLock lock(&mu_);
      ++replies_;
      last_progress_ = std::chrono::steady_clock::now();
      auto it = in_flight_.find(r.header.request_id);
      if (it != in_flight_.end()) {
        op = std::move(it->second.op);
        in_flight_.erase(it);
      }
    }
    if (op != nullptr) {
      const auto& outs = op->outputs();
      if (r.header.status == 0 && r.header.verb == static_cast<uint8_t>(w::Verb::kGet) &&
          outs.size() == r.header.count) {
        DeliverGet(r, *op);
      } else {
        tmem::v1::SessionResponse resp = Decode(r);
        op->Complete(absl::OkStatus(), &resp);
      }
    }
    if (r.header.flags & w::kReplyClosing) {
      return absl::UnavailableError(
          absl::StrCat("the server closed the wire connection: ", std::string(r.body.begin(), r.body.end())));
    }
  }
}

}  // namespace tmem::client
