// Who is calling: the tenant a gRPC call's connection proved (DESIGN.md "Trust").
//
// A TLS connection's verified client certificate names the tenant (its subject CN and/or SANs,
// by tls.tenant_from); a certificate that names no configured tenant is UNAUTHENTICATED. A
// plaintext connection, which tmemd accepts only where the safe defaults allow, is the local
// tenant.
//
// Thread-safety: immutable after construction; Resolve is thread-safe.
#ifndef TMEM_SERVER_GRPC_CALLER_H_
#define TMEM_SERVER_GRPC_CALLER_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_verifier.h>

#include <atomic>
#include <map>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "server/trust/audit.h"
#include "server/trust/tenants.h"
#include "server/trust/tls_context.h"

namespace tmem::grpc_service {

// How many calls (or streams) each tenant has in flight, bounded: one tenant's flood of calls
// takes at most its bound of gRPC's handler threads, never all of them. A tenant's count is kept
// for the life of the process (callers are configured tenants, a bounded set), so a slot holds
// the count itself: releasing it takes no lock.
// Thread-safety: thread-safe.
class TenantSlots {
 public:
  // `setting`: the setting that sets `max`, named in the refusal.
  TenantSlots(int max, const char* what, const char* setting) : max_(max), what_(what), setting_(setting) {}

  // Held while the call runs; gives its place back when destroyed.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept : count_(std::exchange(o.count_, nullptr)) {}
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (count_ != nullptr) count_->fetch_sub(1, std::memory_order_release);
    }

   private:
    friend class TenantSlots;
    std::atomic<int>* count_ = nullptr;
  };

  // A slot for `tenant` in `slot` (which holds none yet), or RESOURCE_EXHAUSTED naming the
  // bound and its setting.
  ::grpc::Status Acquire(const std::string& tenant, Slot* slot);
  int in_flight(const std::string& tenant) const;

 private:
  const int max_;
  const char* const what_;
  const char* const setting_;
  mutable Mutex mu_;
  // std::map: a tenant's count stays where it is while others are added.
  std::map<std::string, std::atomic<int>, std::less<>> open_ ABSL_GUARDED_BY(mu_);
};

class CallerResolver {
 public:
  // Every caller is the local tenant of a default TenantTable (tests, and tmemd without TLS).
  CallerResolver() : CallerResolver(trust::TenantTable(), "cn", nullptr) {}
  // Borrows `audit` (may be null), which must outlive the resolver. At most
  // `max_calls_per_tenant` unary calls of one tenant run at once.
  CallerResolver(trust::TenantTable tenants, std::string tenant_from, trust::Audit* audit,
                 int max_calls_per_tenant = kDefaultMaxCallsPerTenant)
      : tenants_(std::move(tenants)),
        tenant_from_(std::move(tenant_from)),
        audit_(audit),
        calls_(max_calls_per_tenant, "unary calls in flight", "grpc.max_calls_per_tenant") {}

  static constexpr int kDefaultMaxCallsPerTenant = 256;

  absl::StatusOr<trust::Identity> Resolve(const ::grpc::ServerContext& ctx) const;
  // Resolve, then the role: `admin` needs the admin role, otherwise pages or admin.
  // UNAUTHENTICATED or PERMISSION_DENIED (counted and logged) as a gRPC status.
  ::grpc::Status Authorize(const ::grpc::ServerContext& ctx, bool admin, const char* method,
                           trust::Identity* out) const;
  // Authorize, and a slot among the tenant's unary calls in flight (RESOURCE_EXHAUSTED when
  // it has them all), held by `slot` until the call ends.
  ::grpc::Status AuthorizeCall(const ::grpc::ServerContext& ctx, bool admin, const char* method, trust::Identity* out,
                               TenantSlots::Slot* slot) const;
  trust::Audit* audit() const { return audit_; }
  const trust::TenantTable& tenants() const { return tenants_; }
  const TenantSlots& calls() const { return calls_; }

 private:
  trust::TenantTable tenants_;
  std::string tenant_from_;
  trust::Audit* audit_;
  mutable TenantSlots calls_;
};

// The client certificate check of tmemd's gRPC TLS handshakes. gRPC takes the certificate in
// without judging it (GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY: the peer must still
// prove it holds the key) and hands it here before the handshake completes; this verifies it
// against tls.ca by the NBD listener's rules (TlsContext::VerifyClientCertificate, so SIGHUP
// reloads the CA for both), and a refusal ends the handshake and is logged and counted like every
// other (tmem_auth_refused_total{listener="grpc",reason="tls"}).
//
// Thread-safety: Verify runs on gRPC's threads, concurrently; it reads only thread-safe objects.
class ClientCertificateVerifier final : public ::grpc::experimental::ExternalCertificateVerifier {
 public:
  // Borrows both, which must outlive the gRPC server; `audit` may be null.
  ClientCertificateVerifier(const trust::TlsContext* tls, trust::Audit* audit) : tls_(tls), audit_(audit) {}

  bool Verify(::grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(::grpc::Status)> callback, ::grpc::Status* sync_status) override;
  void Cancel(::grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const trust::TlsContext* const tls_;
  trust::Audit* const audit_;
};

}  // namespace tmem::grpc_service

// For the unary handlers (with `ctx` and a `callers_` resolver in scope): declares `caller` and
// holds one of its tenant's call slots for the rest of the handler, or returns the refusal.
// `admin`: the call needs the admin role, else pages or admin.
#define TMEM_AUTHORIZE(admin, method)                                                                          \
  ::tmem::trust::Identity caller;                                                                              \
  ::tmem::grpc_service::TenantSlots::Slot caller_slot;                                                         \
  if (::grpc::Status auth = callers_->AuthorizeCall(*ctx, admin, method, &caller, &caller_slot); !auth.ok()) { \
    return auth;                                                                                               \
  }

#endif  // TMEM_SERVER_GRPC_CALLER_H_
