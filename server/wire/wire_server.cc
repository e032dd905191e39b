#include "server/wire/wire_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <list>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tcp_listen.h"

namespace tmem::wire {
namespace {

using Clock = std::chrono::steady_clock;

// How often a loop looks for connections past their deadlines.
constexpr auto kTimerTick = std::chrono::milliseconds(100);
constexpr size_t kRecvBytes = 256 << 10;

}  // namespace

// What an epoll event points at.
struct Pollable {
  enum class Kind { kListener, kWake, kConnection, kReads } kind;
  int index = 0;  // the listener's
};

struct Connection : Pollable {
  int fd = -1;
  bool tls = false;
  std::unique_ptr<trust::TlsSession> session;  // TLS connections, from accept
  bool handshake_done = false;                 // TLS handshake (plaintext: true)
  std::vector<uint8_t> cipher_out;             // TLS: records to send
  size_t cipher_pos = 0;
  std::unique_ptr<RequestLoop> requests;  // once the peer is known
  Clock::time_point accepted, last_active;
  uint32_t events = 0;  // the epoll interest now
  bool eof = false;     // the peer closed its side
  bool dead = false;    // to be closed at the end of the turn
  std::list<Connection>::iterator self;
};

struct WireServer::Loop {
  int epoll_fd = -1;
  int wake_fd = -1;
  Pollable wake{Pollable::Kind::kWake};
  std::vector<Pollable> listeners;
  std::list<Connection> connections;
  WireCounters counters;
  std::vector<uint8_t> cipher_in;  // TLS: one recv's records
  std::vector<uint8_t> scratch;    // GET pages on their way into replies, shared by the loop's connections
  // Gets waiting for device reads, in flight together while the loop goes on (made by the
  // loop's thread; null when the device offers no queue: gets then read in place).
  std::unique_ptr<DeviceReads> reads;
  Pollable reads_ready{Pollable::Kind::kReads};
  Clock::time_point next_tick;
  // Connections another loop accepted and gave to this one (fd, listener index): connections
  // are spread over the loops at accept, the loop with the fewest open taking the next one, so
  // that a burst of connects does not land on whichever loop woke first.
  Mutex incoming_mu;
  std::vector<std::pair<int, int>> incoming ABSL_GUARDED_BY(incoming_mu);
};

WireServer::WireServer(const WireServerOptions& options) : options_(options) {}

WireServer::~WireServer() { Stop(); }

absl::StatusOr<std::unique_ptr<WireServer>> WireServer::Start(const WireServerOptions& options) {
  if (options.engine == nullptr || options.tenants == nullptr) {
    return absl::InvalidArgumentError("the wire server needs an engine and a tenant table");
  }
  for (const auto& l : options.listeners) {
    if (l.tls && options.tls == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("wire listener ", l.address, " wants TLS but none is configured"));
    }
  }
  std::unique_ptr<WireServer> s(new WireServer(options));
  TMEM_RETURN_IF_ERROR(s->Listen());
  s->tenant_connections_ = std::make_unique<TenantConnections>(options.max_connections_per_tenant);
  {
    MutexLock lock(&s->spare_mu_);
    s->spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  for (int i = 0; i < threads; ++i) {
    auto loop = std::make_unique<Loop>();
    loop->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    loop->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->epoll_fd < 0 || loop->wake_fd < 0) {
      return absl::InternalError(absl::StrCat("wire loop: ", std::strerror(errno)));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &loop->wake;
    ::epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->wake_fd, &ev);
    loop->listeners.resize(s->listen_fds_.size());
    for (size_t k = 0; k < s->listen_fds_.size(); ++k) {
      loop->listeners[k].kind = Pollable::Kind::kListener;
      loop->listeners[k].index = static_cast<int>(k);
      epoll_event lev{};
      lev.events = EPOLLIN | EPOLLEXCLUSIVE;
      lev.data.ptr = &loop->listeners[k];
      ::epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, s->listen_fds_[k], &lev);
    }
    s->loops_.push_back(std::move(loop));
  }
  for (size_t i = 0; i < s->loops_.size(); ++i) {
    s->threads_.emplace_back([p = s.get(), l = s->loops_[i].get(), i] {
      const std::string name = absl::StrCat("tmem-wire-", i);
      pthread_setname_np(pthread_self(), name.c_str());
      p->RunLoop(*l);
    });
  }
  return s;
}

absl::Status WireServer::Listen() {
  for (const auto& l : options_.listeners) {
    TMEM_ASSIGN_OR_RETURN(TcpListener t, ListenTcp(l.address, "the wire protocol", 1024, /*nonblocking=*/true));
    ports_.push_back(t.port);
    listen_fds_.push_back(t.fd);
    listen_tls_.push_back(l.tls);
  }
  return absl::OkStatus();
}

void WireServer::Stop() {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    return;
  }
  for (auto& loop : loops_) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(loop->wake_fd, &one, sizeof(one));
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  for (int fd : listen_fds_) ::close(fd);
  listen_fds_.clear();
  for (auto& loop : loops_) {
    ::close(loop->epoll_fd);
    ::close(loop->wake_fd);
    MutexLock lock(&loop->incoming_mu);
    for (const auto& [fd, index] : loop->incoming) {
      ::close(fd);
      open_.fetch_sub(1, std::memory_order_relaxed);
      loop->counters.connections_open.fetch_sub(1, std::memory_order_relaxed);
    }
    loop->incoming.clear();
  }
  MutexLock lock(&spare_mu_);
  if (spare_fd_ >= 0) ::close(spare_fd_);
  spare_fd_ = -1;
}

int64_t WireServer::connections_open() const { return open_.load(std::memory_order_relaxed); }

std::vector<const WireCounters*> WireServer::loop_counters() const {
  std::vector<const WireCounters*> out;
  for (const auto& l : loops_) out.push_back(&l->counters);
  return out;
}

std::vector<int64_t> WireServer::connections_by_loop() const {
  std::vector<int64_t> out;
  for (const auto& l : loops_) out.push_back(l->counters.connections_open.load(std::memory_order_relaxed));
  return out;
}

namespace {

// Sends what waits, without blocking. False on a socket error.
bool SendSome(int fd, const uint8_t* data, size_t len, size_t* sent) {
  *sent = 0;
  while (*sent < len) {
    const ssize_t n = ::send(fd, data + *sent, len - *sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      *sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
  return true;
}

}  // namespace

void WireServer::RunLoop(Loop& L) {
  const LoopLimits& limits = options_.limits;
  L.cipher_in.resize(kRecvBytes);
  std::vector<Connection*> touched;

  auto close_conn = [&](Connection& c) {
    if (c.fd >= 0) {
      ::epoll_ctl(L.epoll_fd, EPOLL_CTL_DEL, c.fd, nullptr);
      ::close(c.fd);
      c.fd = -1;
      open_.fetch_sub(1, std::memory_order_relaxed);
      L.counters.connections_open.fetch_sub(1, std::memory_order_relaxed);
    }
    if (!c.dead && c.session != nullptr && c.session->records() != nullptr) {
      L.counters.tls_key_updates_received.fetch_add(c.session->records()->key_updates_received(),
                                                    std::memory_order_relaxed);
      L.counters.tls_key_updates_sent.fetch_add(c.session->records()->key_updates_sent(), std::memory_order_relaxed);
    }
    c.dead = true;
  };

  // The peer is known: the request loop starts.
  auto start_requests = [&](Connection& c) {
    std::optional<trust::Identity> who;
    if (c.tls) {
      (c.session->own_records() ? L.counters.tls_own_records : L.counters.tls_gnutls_records)
          .fetch_add(1, std::memory_order_relaxed);
    }
    if (!c.tls) {
      who = options_.tenants->Local();
    } else if (c.session->psk()) {
      who = options_.tenants->ByPsk(c.session->psk_identity());
    } else if (c.session->has_certificate()) {
      who = options_.tenants->ByCertificate(c.session->certificate_names());
    } else {
      who = std::nullopt;  // no certificate (client_auth optional): its HELLO is refused
    }
    c.requests = std::make_unique<RequestLoop>(options_.engine, std::move(who), options_.audit, &L.counters, limits,
                                               tenant_connections_.get(), &L.scratch, L.reads.get(), &c);
  };

  // Reads what the socket has (while the requests want input) and runs what is whole.
  auto read_conn = [&](Connection& c) {
    while (!c.dead && !c.eof) {
      const bool tls_backlog = c.tls && c.cipher_out.size() - c.cipher_pos > limits.max_pending_reply_bytes;
      if (c.requests != nullptr && (!c.requests->wants_input() || tls_backlog)) break;
      ssize_t n;
      if (!c.tls) {
        std::span<uint8_t> space = c.requests->InputSpace();
        n = ::recv(c.fd, space.data(), space.size(), MSG_DONTWAIT);
        if (n > 0) {
          c.requests->Received(static_cast<size_t>(n));
          c.last_active = Clock::now();
          c.requests->Run();
          if (static_cast<size_t>(n) < space.size()) break;  // drained
          continue;
        }
      } else {
        n = ::recv(c.fd, L.cipher_in.data(), L.cipher_in.size(), MSG_DONTWAIT);
        if (n > 0) {
          c.last_active = Clock::now();
          c.session->Feed(L.cipher_in.data(), static_cast<size_t>(n));
          if (!c.handshake_done) {
            absl::StatusOr<bool> done = c.session->Handshake(*options_.tls);
            if (!done.ok()) {
              if (options_.audit != nullptr) {
                options_.audit->Refused("wire", trust::Audit::Refusal::kTls, done.status().message());
              }
              L.counters.connections_refused.fetch_add(1, std::memory_order_relaxed);
              c.eof = true;  // send the alert GnuTLS queued, then close
              c.dead = c.cipher_out.empty();
              return;
            }
            if (!*done) continue;
            c.handshake_done = true;
            start_requests(c);
          }
          while (true) {
            std::span<uint8_t> space = c.requests->InputSpace();
            const ssize_t got = c.session->Decrypt(space.data(), space.size());
            if (got > 0) {
              c.requests->Received(static_cast<size_t>(got));
              continue;
            }
            if (got < 0) c.eof = true;
            break;
          }
          c.requests->Run();
          if (static_cast<size_t>(n) < L.cipher_in.size()) break;
          continue;
        }
      }
      if (n == 0) {
        c.eof = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) close_conn(c);
      break;
    }
  };

  // One send of what is ready (TLS: the replies encrypted first, within the bound).
  auto flush_once = [&](Connection& c) {
    if (c.dead) return;
    if (c.requests != nullptr && c.tls) {
      std::span<const uint8_t> out = c.requests->out();
      if (!out.empty() && c.cipher_out.size() - c.cipher_pos <= limits.max_pending_reply_bytes) {
        iovec iov{const_cast<uint8_t*>(out.data()), out.size()};
        if (!c.session->Encrypt(&iov, 1)) {
          close_conn(c);
          return;
        }
        c.requests->Sent(out.size());
      }
    }
    const uint8_t* data;
    size_t len;
    if (c.tls) {
      data = c.cipher_out.data() + c.cipher_pos;
      len = c.cipher_out.size() - c.cipher_pos;
    } else {
      std::span<const uint8_t> out = c.requests->out();
      data = out.data();
      len = out.size();
    }
    if (len > 0) {
      size_t sent = 0;
      if (!SendSome(c.fd, data, len, &sent)) {
        close_conn(c);
        return;
      }
      if (sent > 0) c.last_active = Clock::now();
      if (c.tls) {
        c.cipher_pos += sent;
        if (c.cipher_pos == c.cipher_out.size()) {
          c.cipher_out.clear();
          c.cipher_pos = 0;
        }
      } else {
        c.requests->Sent(sent);
      }
      len -= sent;
      // A TLS connection's plaintext replies left behind by the bound go out on the next turn.
      if (c.tls && len == 0 && c.requests != nullptr && !c.requests->out().empty()) len = 1;
    }
  };

  // The epoll interest the connection's state asks for; closes it once a closing is sent.
  auto set_interest = [&](Connection& c) {
    if (c.dead) return;
    size_t len = c.tls ? c.cipher_out.size() - c.cipher_pos : c.requests->out().size();
    if (c.tls && len == 0 && c.requests != nullptr && !c.requests->out().empty()) len = 1;
    const bool closing = c.eof || (c.requests != nullptr && c.requests->closing());
    // A peer that closed only its side still gets the replies of its gets waiting for the device.
    const bool waiting = c.requests != nullptr && !c.requests->closing() && c.requests->pending_gets() > 0;
    if (closing && len == 0 && !waiting) {
      close_conn(c);
      return;
    }
    uint32_t want = 0;
    if (len > 0) want |= EPOLLOUT;
    const bool tls_backlog = c.tls && c.cipher_out.size() - c.cipher_pos > limits.max_pending_reply_bytes;
    if (!closing && (c.requests == nullptr || (c.requests->wants_input() && !tls_backlog))) want |= EPOLLIN;
    if (want != c.events) {
      epoll_event ev{};
      // RDHUP only with IN: level-triggered, a half-closed peer would wake the loop forever.
      ev.events = want | ((want & EPOLLIN) != 0 ? EPOLLRDHUP : 0);
      ev.data.ptr = &c;
      ::epoll_ctl(L.epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
      c.events = want;
    }
  };

  // Sends what is ready with one send, and sets the connection's interest. Requests already in
  // the input that waited for replies to drain run now: no event would bring them back.
  auto flush_conn = [&](Connection& c) {
    if (c.dead) return;
    while (true) {
      flush_once(c);
      if (c.dead || c.requests == nullptr || c.requests->idle() || !c.requests->wants_input()) break;
      // Every request answered adds a reply: no new output means what waits is a partial request.
      const size_t before = c.requests->out().size();
      c.requests->Run();
      if (c.requests->out().size() == before) break;
    }
    set_interest(c);
  };
  std::function<void(int, int)> adopt;
  auto accept_on = [&](int index) {
    const int lfd = listen_fds_[static_cast<size_t>(index)];
    while (true) {
      const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
        // Out of descriptors: the connection would stay pending and wake every loop forever.
        // Accept it on the spare descriptor's place and close it at once.
        L.counters.connections_refused.fetch_add(1, std::memory_order_relaxed);
        MutexLock lock(&spare_mu_);
        if (spare_fd_ >= 0) {
          ::close(spare_fd_);
          const int victim = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
          if (victim >= 0) ::close(victim);
          spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        continue;
      }
      if (fd < 0) return;  // EAGAIN: another loop took it, or none is left
      L.counters.connections_accepted.fetch_add(1, std::memory_order_relaxed);
      if (open_.fetch_add(1, std::memory_order_relaxed) >= options_.max_connections) {
        open_.fetch_sub(1, std::memory_order_relaxed);
        L.counters.connections_refused.fetch_add(1, std::memory_order_relaxed);
        ::close(fd);
        continue;
      }
      // To the loop with the fewest connections open (this one on a tie).
      Loop* target = &L;
      for (auto& other : loops_) {
        if (other->counters.connections_open.load(std::memory_order_relaxed) <
            target->counters.connections_open.load(std::memory_order_relaxed)) {
          target = other.get();
        }
      }
      target->counters.connections_open.fetch_add(1, std::memory_order_relaxed);
      if (target != &L) {
        {
          MutexLock lock(&target->incoming_mu);
          target->incoming.emplace_back(fd, index);
        }
        const uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(target->wake_fd, &one, sizeof(one));
        continue;
      }
      adopt(fd, index);
    }
  };
  // A connection accepted for this loop (connections_open already counts it).
  adopt = [&](int fd, int index) {
    {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      L.connections.emplace_back();
      Connection& c = L.connections.back();
      c.self = std::prev(L.connections.end());
      c.kind = Pollable::Kind::kConnection;
      c.fd = fd;
      c.tls = listen_tls_[static_cast<size_t>(index)];
      c.accepted = c.last_active = Clock::now();
      if (c.tls) {
        absl::StatusOr<std::unique_ptr<trust::TlsSession>> s = options_.tls->AcceptInMemory(&c.cipher_out);
        if (!s.ok()) {
          TMEM_LOG(Warning) << "wire: TLS session: " << s.status().message();
          close_conn(c);
          L.connections.erase(c.self);
          return;
        }
        c.session = std::move(*s);
      } else {
        c.handshake_done = true;
        start_requests(c);
      }
      c.events = EPOLLIN;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.ptr = &c;
      ::epoll_ctl(L.epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    }
  };

  auto check_deadlines = [&](Clock::time_point now) {
    const auto handshake = std::chrono::milliseconds(options_.handshake_timeout_ms);
    const auto idle = std::chrono::milliseconds(options_.idle_timeout_ms);
    for (Connection& c : L.connections) {
      if (c.dead) continue;
      // Idle counts from the last byte in or out, whatever waits: a peer that stops halfway
      // through a request, or stops reading its replies, is idle too.
      const bool hello = c.requests != nullptr && c.requests->hello_done();
      if ((!hello && now - c.accepted > handshake) || (hello && now - c.last_active > idle)) {
        L.counters.connections_timed_out.fetch_add(1, std::memory_order_relaxed);
        close_conn(c);
      }
    }
  };

  L.reads = DeviceReads::Create(options_.engine);
  if (L.reads != nullptr) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &L.reads_ready;
    ::epoll_ctl(L.epoll_fd, EPOLL_CTL_ADD, L.reads->event_fd(), &ev);
  }
  std::vector<std::pair<void*, std::unique_ptr<PendingGet>>> reaped;

  epoll_event events[128];
  L.next_tick = Clock::now() + kTimerTick;
  while (!stopping_.load(std::memory_order_acquire)) {
    const int n = ::epoll_wait(L.epoll_fd, events, 128, static_cast<int>(kTimerTick.count()));
    touched.clear();
    // The device reads of every get this turn start together, after the turn's requests are read.
    if (L.reads != nullptr) L.reads->Plug();
    for (int i = 0; i < n; ++i) {
      auto* p = static_cast<Pollable*>(events[i].data.ptr);
      if (p->kind == Pollable::Kind::kWake) {
        uint64_t count;
        [[maybe_unused]] ssize_t r = ::read(L.wake_fd, &count, sizeof(count));
        std::vector<std::pair<int, int>> given;
        {
          MutexLock lock(&L.incoming_mu);
          given.swap(L.incoming);
        }
        for (const auto& [fd, index] : given) adopt(fd, index);
        continue;
      }
      if (p->kind == Pollable::Kind::kListener) {
        accept_on(p->index);
        continue;
      }
      if (p->kind == Pollable::Kind::kReads) {
        // Gets whose device reads are done: their replies join the others of this turn.
        reaped.clear();
        L.reads->Reap(&reaped);
        for (auto& [owner, get] : reaped) {
          auto* requests = static_cast<RequestLoop*>(owner);
          requests->Complete(std::move(get));
          touched.push_back(static_cast<Connection*>(requests->context()));
        }
        continue;
      }
      auto* c = static_cast<Connection*>(p);
      if (c->dead) continue;
      if (events[i].events & (EPOLLERR)) {
        close_conn(*c);
      } else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) {
        read_conn(*c);
      }
      touched.push_back(c);
    }
    if (L.reads != nullptr) L.reads->Unplug();
    for (Connection* c : touched) flush_conn(*c);
    const auto now = Clock::now();
    if (now >= L.next_tick) {
      L.next_tick = now + kTimerTick;
      check_deadlines(now);
    }
    for (auto it = L.connections.begin(); it != L.connections.end();) {
      if (it->dead) {
        close_conn(*it);
        it = L.connections.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Stopping: what is ready goes out if the socket takes it now; then every connection closes.
  for (Connection& c : L.connections) {
    if (!c.dead) flush_conn(c);
    close_conn(c);
  }
  L.connections.clear();
  if (L.reads != nullptr) ::epoll_ctl(L.epoll_fd, EPOLL_CTL_DEL, L.reads->event_fd(), nullptr);
  L.reads.reset();  // waits for the device reads still in flight (their gets are settled)
}

}  // namespace tmem::wire
