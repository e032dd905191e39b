#include "server/nbd/handshake.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/nbd/protocol.h"
#include "server/trust/tls_context.h"

namespace tmem::nbd {
namespace {

using Clock = std::chrono::steady_clock;

// The connection after NBD_OPT_STARTTLS.
class TlsTransport final : public Transport {
 public:
  explicit TlsTransport(std::unique_ptr<trust::TlsSession> s) : s_(std::move(s)) {}
  ssize_t Recv(void* buf, size_t len, bool wait_all) override {
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = 0;
    do {
      ssize_t n = s_->Recv(p + got, len - got);
      if (n <= 0) return got > 0 ? static_cast<ssize_t>(got) : n;
      got += static_cast<size_t>(n);
    } while (wait_all && got < len);
    return static_cast<ssize_t>(got);
  }
  bool SendAll(iovec* iov, int count) override { return s_->SendAll(iov, count); }
  trust::TlsSession& session() { return *s_; }

 private:
  std::unique_ptr<trust::TlsSession> s_;
};

// Every socket read of the handshake waits at most until the handshake's deadline.
bool ArmDeadline(int fd, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  timeval tv{static_cast<time_t>(left / 1'000'000), static_cast<suseconds_t>(left % 1'000'000)};
  return ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0;
}

void Disarm(int fd) {
  timeval tv{0, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

// Option data longer than this is a broken or hostile client: the connection is dropped.
constexpr uint32_t kMaxOptionBytes = 64 << 10;
// More options than this in one handshake: dropped too.
constexpr int kMaxOptions = 256;

bool Reply(Transport& fd, uint32_t option, uint32_t type, const void* data, uint32_t len) {
  uint8_t h[20];
  Put64(h, kOptReplyMagic);
  Put32(h + 8, option);
  Put32(h + 12, type);
  Put32(h + 16, len);
  iovec iov[2] = {{h, sizeof(h)}, {const_cast<void*>(data), len}};
  return WriteFullV(fd, iov, len > 0 ? 2 : 1);
}

bool ReplyError(Transport& fd, uint32_t option, uint32_t type, const std::string& message) {
  return Reply(fd, option, type, message.data(), static_cast<uint32_t>(message.size()));
}

bool SendInfoExport(Transport& fd, uint32_t option, const Export& e, bool read_only) {
  uint8_t b[12];
  Put16(b, kInfoExport);
  Put64(b + 2, e.backend->size());
  Put16(b + 10, e.TransmissionFlags(read_only));
  return Reply(fd, option, kRepInfo, b, sizeof(b));
}

bool SendInfoString(Transport& fd, uint32_t option, uint16_t info, const std::string& s) {
  std::vector<uint8_t> b(2 + s.size());
  Put16(b.data(), info);
  std::memcpy(b.data() + 2, s.data(), s.size());
  return Reply(fd, option, kRepInfo, b.data(), static_cast<uint32_t>(b.size()));
}

bool SendInfoBlockSize(Transport& fd, uint32_t option) {
  uint8_t b[14];
  Put16(b, kInfoBlockSize);
  Put32(b + 2, kMinBlock);
  Put32(b + 6, kPreferredBlock);
  Put32(b + 10, kMaxPayload);
  return Reply(fd, option, kRepInfo, b, sizeof(b));
}

Export* Find(NbdServer& server, const std::string& name) {
  // The empty name is the default export: the first one.
  if (name.empty()) return server.exports().empty() ? nullptr : server.exports().front().get();
  return const_cast<Export*>(server.FindExport(name));
}

}  // namespace

bool PeerIsLocal(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  if (ss.ss_family == AF_UNIX) return true;
  if (ss.ss_family == AF_INET) {
    return (ntohl(reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);
  }
  return false;
}

Negotiated Handshake(NbdServer& server, int fd) {
  const NbdServerOptions& o = server.options();
  const trust::TenantTable& tenants = server.tenants();
  Negotiated out;
  out.transport = std::make_unique<SocketTransport>(fd);
  Transport* t = out.transport.get();
  const auto deadline = Clock::now() + std::chrono::milliseconds(o.handshake_timeout_ms);
  // Plaintext peers: loopback and unix socket clients are the local tenant; others must start
  // TLS first (the protocol's "TLS-only" mode) unless the operator allowed insecure plaintext.
  const bool local = PeerIsLocal(fd) || o.insecure_plaintext;
  if (local) out.who = tenants.Local();
  bool tls = false;
  // Before TLS with a peer that must use it: only ABORT and STARTTLS are served.
  auto tls_only = [&] { return !tls && !local && o.tls != nullptr; };
  auto needs_tls = [&](const Export& e) { return !tls && (e.tls_required || !local); };
  auto refuse = [&](trust::Audit::Refusal why, const std::string& detail) {
    if (o.audit != nullptr) o.audit->Refused("nbd", why, detail);
  };
  // The export `name` if this connection may open it now; otherwise the option's error reply.
  auto open = [&](const std::string& name, uint32_t* error, std::string* message, bool* read_only) -> Export* {
    Export* e = Find(server, name);
    trust::Access access = e != nullptr ? trust::ExportAccess(e->allow, out.who) : trust::Access::kNone;
    if (e != nullptr && needs_tls(*e)) {
      *error = kRepErrTlsReqd;
      *message = "export '" + name + "' requires TLS: start with NBD_OPT_STARTTLS";
      return nullptr;
    }
    if (e == nullptr || access == trust::Access::kNone) {
      // The same answer as for an export that does not exist: names reveal nothing.
      if (e != nullptr) {
        refuse(trust::Audit::Refusal::kPermission,
               absl::StrCat("tenant '", out.who.tenant, "' is not on export '", name, "''s allow list"));
      }
      *error = kRepErrUnknown;
      *message = "no export named '" + name + "'";
      return nullptr;
    }
    *read_only = e->read_only || access == trust::Access::kReadOnly;
    return e;
  };

  uint8_t hello[18];
  Put64(hello, kNbdMagic);
  Put64(hello + 8, kOptMagic);
  Put16(hello + 16, kFlagFixedNewstyle | kFlagNoZeroes);
  if (!WriteFull(*t, hello, sizeof(hello))) return out;
  uint8_t cf[4];
  if (!ArmDeadline(fd, deadline) || !ReadFull(*t, cf, 4)) return out;
  const uint32_t client_flags = Get32(cf);
  if ((client_flags & ~(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) != 0) return out;  // unknown: MUST close
  const bool no_zeroes = (client_flags & kClientFlagNoZeroes) != 0;

  for (int n = 0; n < kMaxOptions; ++n) {
    uint8_t h[16];
    if (!ArmDeadline(fd, deadline) || !ReadFull(*t, h, sizeof(h))) return out;
    if (Get64(h) != kOptMagic) return out;
    const uint32_t option = Get32(h + 8);
    const uint32_t len = Get32(h + 12);
    if (len > kMaxOptionBytes) return out;
    std::vector<uint8_t> data(len);
    if (len > 0 && !ReadFull(*t, data.data(), len)) return out;
    if (server.stopping()) {
      ReplyError(*t, option, 0x80000007u /* NBD_REP_ERR_SHUTDOWN */, "server is shutting down");
      return out;
    }
    if (tls_only() && option != kOptStartTls && option != kOptAbort) {
      if (option == kOptExportName) return out;  // cannot be refused with a reply: close
      refuse(trust::Audit::Refusal::kTlsRequired, absl::StrCat("plaintext option ", option, " from a remote peer"));
      if (!ReplyError(*t, option, kRepErrTlsReqd, "TLS is required: start with NBD_OPT_STARTTLS")) return out;
      continue;
    }

    switch (option) {
      case kOptStartTls: {
        if (len != 0) {
          if (!ReplyError(*t, option, kRepErrInvalid, "NBD_OPT_STARTTLS carries no data")) return out;
          break;
        }
        if (o.tls == nullptr) {
          if (!ReplyError(*t, option, kRepErrUnsup, "TLS is not configured on this server")) return out;
          break;
        }
        if (tls) {
          if (!ReplyError(*t, option, kRepErrInvalid, "TLS is already on")) return out;
          break;
        }
        if (!Reply(*t, option, kRepAck, nullptr, 0)) return out;
        if (!ArmDeadline(fd, deadline)) return out;
        absl::StatusOr<std::unique_ptr<trust::TlsSession>> session = o.tls->Accept(fd);
        if (!session.ok()) {
          refuse(trust::Audit::Refusal::kTls, std::string(session.status().message()));
          return out;
        }
        std::optional<trust::Identity> who;
        if ((*session)->psk()) {
          who = tenants.ByPsk((*session)->psk_identity());
          if (!who) {
            refuse(trust::Audit::Refusal::kUnknownTenant,
                   absl::StrCat("PSK identity '", (*session)->psk_identity(), "' names no configured tenant"));
            return out;
          }
        } else if ((*session)->has_certificate()) {
          who = tenants.ByCertificate((*session)->certificate_names());
          if (!who) {
            refuse(trust::Audit::Refusal::kUnknownTenant,
                   absl::StrCat("client certificate '",
                                (*session)->certificate_names().empty() ? "" : (*session)->certificate_names()[0],
                                "' names no configured tenant"));
            return out;
          }
        } else {
          who = trust::Identity{};  // no certificate (tls.client_auth: optional): exports that allow "*"
        }
        out.who = *who;
        out.transport = std::make_unique<TlsTransport>(std::move(*session));
        t = out.transport.get();
        tls = true;
        out.structured = false;  // option state before STARTTLS is forgotten
        break;
      }
      case kOptExportName: {
        uint32_t error = 0;
        std::string message;
        bool read_only = false;
        Export* e = open(std::string(data.begin(), data.end()), &error, &message, &read_only);
        if (e == nullptr) return out;  // this option cannot fail: close
        uint8_t b[10 + 124] = {};
        Put64(b, e->backend->size());
        Put16(b + 8, e->TransmissionFlags(read_only));
        if (!WriteFull(*t, b, no_zeroes ? 10 : sizeof(b))) return out;
        out.exp = e;
        out.read_only = read_only;
        Disarm(fd);
        return out;
      }
      case kOptAbort:
        Reply(*t, option, kRepAck, nullptr, 0);
        return out;
      case kOptList: {
        if (len != 0) {
          if (!ReplyError(*t, option, kRepErrInvalid, "NBD_OPT_LIST carries no data")) return out;
          break;
        }
        // Only what this connection may open.
        for (const auto& e : server.exports()) {
          if (trust::ExportAccess(e->allow, out.who) == trust::Access::kNone) continue;
          std::vector<uint8_t> b(4 + e->name.size() + e->description.size());
          Put32(b.data(), static_cast<uint32_t>(e->name.size()));
          std::memcpy(b.data() + 4, e->name.data(), e->name.size());
          std::memcpy(b.data() + 4 + e->name.size(), e->description.data(), e->description.size());
          if (!Reply(*t, option, kRepServer, b.data(), static_cast<uint32_t>(b.size()))) return out;
        }
        if (!Reply(*t, option, kRepAck, nullptr, 0)) return out;
        break;
      }
      case kOptStructuredReply:
        if (len != 0) {
          if (!ReplyError(*t, option, kRepErrInvalid, "NBD_OPT_STRUCTURED_REPLY carries no data")) return out;
          break;
        }
        out.structured = true;
        if (!Reply(*t, option, kRepAck, nullptr, 0)) return out;
        break;
      case kOptInfo:
      case kOptGo: {
        // 32-bit name length, name, 16-bit request count, requests.
        bool ok = len >= 6;
        uint32_t name_len = ok ? Get32(data.data()) : 0;
        ok = ok && name_len <= len - 6 && name_len <= kMaxString;
        uint16_t count = ok ? Get16(data.data() + 4 + name_len) : 0;
        ok = ok && len == 4 + name_len + 2 + 2u * count;
        if (!ok) {
          if (!ReplyError(*t, option, kRepErrInvalid, "malformed NBD_OPT_INFO/GO")) return out;
          break;
        }
        const std::string name(data.begin() + 4, data.begin() + 4 + name_len);
        uint32_t error = 0;
        std::string message;
        bool read_only = false;
        Export* e = open(name, &error, &message, &read_only);
        if (e == nullptr) {
          if (!ReplyError(*t, option, error, message)) return out;
          break;
        }
        bool want_name = false, want_description = false;
        for (uint16_t i = 0; i < count; ++i) {
          const uint16_t info = Get16(data.data() + 4 + name_len + 2 + 2 * i);
          want_name |= info == kInfoName;
          want_description |= info == kInfoDescription;
        }
        if (!SendInfoExport(*t, option, *e, read_only)) return out;
        if (want_name && !SendInfoString(*t, option, kInfoName, e->name)) return out;
        if (want_description && !e->description.empty() &&
            !SendInfoString(*t, option, kInfoDescription, e->description)) {
          return out;
        }
        if (!SendInfoBlockSize(*t, option)) return out;
        if (!Reply(*t, option, kRepAck, nullptr, 0)) return out;
        if (option == kOptGo) {
          out.exp = e;
          out.read_only = read_only;
          Disarm(fd);
          return out;
        }
        break;
      }
      default:
        if (!ReplyError(*t, option, kRepErrUnsup, "option " + std::to_string(option) + " is not supported")) {
          return out;
        }
        break;
    }
  }
  return out;
}

}  // namespace tmem::nbd
