#include "server/nbd/nbd_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/tcp_listen.h"
#include "server/nbd/protocol.h"
#include "server/trust/tls_context.h"

namespace tmem::nbd {

const char* CommandName(uint16_t type) {
  switch (type) {
    case kCmdRead:
      return "read";
    case kCmdWrite:
      return "write";
    case kCmdDisc:
      return "disc";
    case kCmdFlush:
      return "flush";
    case kCmdTrim:
      return "trim";
    case 5:
      return "cache";
    case kCmdWriteZeroes:
      return "write_zeroes";
    case 7:
      return "block_status";
    default:
      return "unknown";
  }
}

uint32_t NbdErrorOf(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kPermissionDenied:
      return kEperm;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return kEinval;
    case absl::StatusCode::kResourceExhausted:
      return kEnospc;
    case absl::StatusCode::kCancelled:
      return kEshutdown;
    default:
      return kEio;
  }
}

uint16_t Export::TransmissionFlags(bool read_only_access) const {
  const backend::BackendCaps c = backend->caps();
  const bool ro = read_only || c.read_only || read_only_access;
  uint16_t f = kFlagHasFlags;
  if (ro) f |= kFlagReadOnly;
  if (c.flush) f |= kFlagSendFlush;
  if (c.fua) f |= kFlagSendFua;
  if (!ro && c.trim) f |= kFlagSendTrim;
  if (!ro) f |= kFlagSendWriteZeroes;  // zeroing can always fall back to writing zeros
  // Advertised only when a flush on one connection covers writes completed on all of them.
  if (c.multi_conn) f |= kFlagCanMultiConn;
  return f;
}

absl::StatusOr<std::unique_ptr<NbdServer>> NbdServer::Start(const NbdServerOptions& options,
                                                            std::vector<std::unique_ptr<Export>> exports) {
  if (options.max_connections < 1 || options.max_requests_in_flight < 1 || options.threads_per_connection < 1 ||
      options.max_bytes_in_flight < kMaxPayload) {
    return absl::InvalidArgumentError(
        absl::StrCat("NBD limits: connections, requests in flight and threads must be positive, bytes in flight at "
                     "least ",
                     kMaxPayload));
  }
  if (options.gather_us < 0 || options.gather_us > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("NBD gather_us must be within 0..1000, not ", options.gather_us));
  }
  std::set<std::string> names;
  for (const auto& e : exports) {
    if (e->name.empty() || e->name.size() > kMaxString) {
      return absl::InvalidArgumentError("an export name must have 1 to 4096 bytes");
    }
    if (!names.insert(e->name).second) return absl::InvalidArgumentError(absl::StrCat("export '", e->name, "' twice"));
  }
  std::unique_ptr<NbdServer> s(new NbdServer(options));
  s->exports_ = std::move(exports);
  if (absl::Status st = s->Listen(); !st.ok()) return st;
  for (int fd : s->listen_fds_) s->acceptors_.emplace_back([p = s.get(), fd] { p->AcceptLoop(fd); });
  return s;
}

absl::Status NbdServer::Listen() {
  for (const std::string& address : options_.listen) {
    absl::StatusOr<TcpListener> t = ListenTcp(address, "NBD", 128, /*nonblocking=*/false);
    if (!t.ok()) return t.status();
    ports_.push_back(t->port);
    listen_fds_.push_back(t->fd);
  }
  if (!options_.unix_socket.empty()) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (options_.unix_socket.size() >= sizeof(sa.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("NBD unix socket path is too long: ", options_.unix_socket));
    }
    std::strcpy(sa.sun_path, options_.unix_socket.c_str());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct stat st;
    if (::lstat(sa.sun_path, &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        ::close(fd);
        return absl::FailedPreconditionError(absl::StrCat(options_.unix_socket, " exists and is not a socket"));
      }
      // A socket nobody answers on is left over from an earlier run: replace it.
      int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      const bool live = ::connect(probe, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
      ::close(probe);
      if (live) {
        ::close(fd);
        return absl::UnavailableError(absl::StrCat("NBD unix socket ", options_.unix_socket, " is in use"));
      }
      ::unlink(sa.sun_path);
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(fd, 128) != 0) {
      const int err = errno;
      ::close(fd);
      return absl::UnavailableError(
          absl::StrCat("cannot listen for NBD on ", options_.unix_socket, ": ", std::strerror(err)));
    }
    listen_fds_.push_back(fd);
  }
  return absl::OkStatus();
}

void NbdServer::AcceptLoop(int listen_fd) {
  while (!stopping()) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (stopping()) break;
      if (errno == EMFILE || errno == ENFILE) {
        TMEM_LOG_RATE_LIMITED(Warning) << "NBD accept: out of file descriptors";
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      break;
    }
    if (stopping()) {
      ::close(fd);
      break;
    }
    if (open_connections_.fetch_add(1) >= options_.max_connections) {
      // A connection that has not finished its handshake holds no export yet: the oldest such
      // makes room, so that idle connections cannot lock real clients out.
      bool evicted;
      {
        MutexLock lock(&mu_);
        evicted = EvictOneHandshake();
      }
      if (!evicted) {
        open_connections_.fetch_sub(1);
        refused_.fetch_add(1);
        TMEM_LOG_RATE_LIMITED(Warning) << "NBD: refusing a connection: " << options_.max_connections
                                       << " are open (nbd max_connections)";
        ::close(fd);
        continue;
      }
      handshakes_evicted_.fetch_add(1, std::memory_order_relaxed);
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // fails harmlessly on unix sockets
    MutexLock lock(&mu_);
    for (auto& t : finished_) t.join();
    finished_.clear();
    const uint64_t id = next_connection_id_++;
    // Keyed by an id, not the fd: a closed fd number is reused by the next accept at once.
    try {
      connections_[id] = {fd, std::thread([this, id, fd] { Serve(id, fd); })};
    } catch (const std::system_error& e) {
      connections_.erase(id);
      open_connections_.fetch_sub(1);
      refused_.fetch_add(1);
      TMEM_LOG_RATE_LIMITED(Warning) << "NBD: refusing a connection: cannot start its thread: " << e.what();
      ::close(fd);
    }
  }
}

void NbdServer::Serve(uint64_t id, int fd) {
  ServeConnection(*this, fd);
  {
    // Forget the fd before closing it, so that Stop never shuts down a number that was reused.
    MutexLock lock(&mu_);
    auto it = connections_.find(id);
    if (it != connections_.end()) {
      finished_.push_back(std::move(it->second.thread));
      connections_.erase(it);
    }
  }
  ::close(fd);
  open_connections_.fetch_sub(1);
}

bool NbdServer::EvictOneHandshake() {
  for (auto& [id, c] : connections_) {  // ascending ids: the oldest first
    if (c.in_handshake && !c.evicted) {
      c.evicted = true;
      ::shutdown(c.fd, SHUT_RDWR);
      return true;
    }
  }
  return false;
}

void NbdServer::AdmitBytes(uint64_t bytes) {
  if (bytes == 0) return;
  MutexLock lock(&bytes_mu_);
  while (total_bytes_ > 0 && total_bytes_ + bytes > options_.max_total_bytes_in_flight) bytes_cv_.Wait(&bytes_mu_);
  total_bytes_ += bytes;
}

bool NbdServer::TryAdmitBytes(uint64_t bytes) {
  MutexLock lock(&bytes_mu_);
  if (total_bytes_ + bytes > options_.max_total_bytes_in_flight) return false;
  total_bytes_ += bytes;
  return true;
}

void NbdServer::ReleaseBytes(uint64_t bytes) {
  if (bytes == 0) return;
  MutexLock lock(&bytes_mu_);
  total_bytes_ -= bytes;
  bytes_cv_.SignalAll();
}

uint64_t NbdServer::total_bytes_in_flight() const {
  MutexLock lock(&bytes_mu_);
  return total_bytes_;
}

void NbdServer::HandshakeDone(int fd) {
  MutexLock lock(&mu_);
  for (auto& [id, c] : connections_) {
    if (c.fd == fd) c.in_handshake = false;
  }
}

const Export* NbdServer::FindExport(const std::string& name) const {
  for (const auto& e : exports_) {
    if (e->name == name) return e.get();
  }
  return nullptr;
}

void NbdServer::Stop() {
  {
    MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  stopping_.store(true, std::memory_order_release);
  for (int fd : listen_fds_) ::shutdown(fd, SHUT_RDWR);
  for (auto& t : acceptors_) t.join();
  for (int fd : listen_fds_) ::close(fd);
  if (!options_.unix_socket.empty()) ::unlink(options_.unix_socket.c_str());
  // No new requests are read; those in flight finish (later ones are answered ESHUTDOWN).
  {
    MutexLock lock(&mu_);
    for (auto& [id, c] : connections_) ::shutdown(c.fd, SHUT_RD);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.shutdown_timeout_ms);
  bool cut = false;
  while (true) {
    {
      MutexLock lock(&mu_);
      if (connections_.empty()) break;
      if (!cut && std::chrono::steady_clock::now() > deadline) {
        cut = true;
        // Stuck writing to a client that does not read: cut it off. Stuck waiting for room in a
        // full cache: that write gives up with EIO (it was never acknowledged).
        for (auto& [id, c] : connections_) ::shutdown(c.fd, SHUT_RDWR);
        for (const auto& e : exports_) e->backend->CancelWaits();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    MutexLock lock(&mu_);
    for (auto& t : finished_) t.join();
    finished_.clear();
  }
  for (const auto& e : exports_) {
    if (absl::Status s = e->backend->Flush(); !s.ok()) {
      TMEM_LOG(Warning) << "export " << e->name << ": flush at shutdown failed: " << s;
    }
  }
}

NbdServer::~NbdServer() { Stop(); }

void NbdServer::VisitStats(StatsVisitor& v) const {
  if (options_.tls != nullptr) {
    v.Counter("nbd_tls_sessions", "NBD TLS sessions by who seals and opens their records (tls.records)",
              options_.tls->socket_sessions_own_records(), {{"records", "tmem"}});
    v.Counter("nbd_tls_sessions", "NBD TLS sessions by who seals and opens their records (tls.records)",
              options_.tls->socket_sessions_gnutls_records(), {{"records", "gnutls"}});
  }
  for (const auto& e : exports_) {
    const StatLabels ex = {{"export", e->name}};
    for (int c = 0; c < Export::kCommands; ++c) {
      const uint64_t n = e->requests[c].load(std::memory_order_relaxed);
      if (n == 0 && c != kCmdRead && c != kCmdWrite && c != kCmdFlush) continue;
      const StatLabels l = {{"export", e->name}, {"command", CommandName(static_cast<uint16_t>(c))}};
      v.Counter("nbd_requests", "NBD requests received, by export and command", n, l);
      v.Counter("nbd_request_errors", "NBD requests answered with an error, by export and command",
                e->errors[c].load(std::memory_order_relaxed), l);
      e->latency[c].Visit(v, "nbd_request_duration_seconds", "Time from reading an NBD request to sending its reply",
                          l);
    }
    v.Counter("nbd_read_bytes", "Bytes read by NBD clients", e->bytes_read.load(std::memory_order_relaxed), ex);
    v.Counter("nbd_written_bytes", "Bytes written by NBD clients", e->bytes_written.load(std::memory_order_relaxed),
              ex);
    v.Counter("nbd_batched_requests", "NBD requests run in a batch with others that arrived together (one reply send)",
              e->batched_requests.load(std::memory_order_relaxed), ex);
    v.Counter("nbd_read_gathers", "Waits before reading the socket, so that a busy client's requests arrive together",
              e->gathers.load(std::memory_order_relaxed), ex);
    v.Counter("nbd_connections", "NBD connections that reached transmission",
              e->connections_total.load(std::memory_order_relaxed), ex);
    v.Gauge("nbd_open_connections", "NBD connections open now",
            static_cast<double>(e->connections_open.load(std::memory_order_relaxed)), ex);
    v.Gauge("nbd_export_size_bytes", "Size of the export", static_cast<double>(e->backend->size()), ex);
  }
  v.Counter("nbd_connections_refused", "NBD connections closed at once because max_connections were open",
            refused_.load(), {});
  v.Gauge("nbd_bytes_in_flight", "Request and reply bytes in flight over every NBD connection",
          static_cast<double>(total_bytes_in_flight()), {});
  v.Counter("nbd_handshakes_evicted",
            "NBD connections still in their handshake closed to make room for a new one (max_connections)",
            handshakes_evicted_.load(std::memory_order_relaxed), {});
}

}  // namespace tmem::nbd
