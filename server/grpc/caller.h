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

#include <string>

#include "absl/status/statusor.h"
#include "server/trust/audit.h"
#include "server/trust/tenants.h"
#include "server/trust/tls_context.h"

namespace tmem::grpc_service {

class CallerResolver {
 public:
  // Every caller is the local tenant of a default TenantTable (tests, and tmemd without TLS).
  CallerResolver() = default;
  // Borrows `audit` (may be null), which must outlive the resolver.
  CallerResolver(trust::TenantTable tenants, std::string tenant_from, trust::Audit* audit)
      : tenants_(std::move(tenants)), tenant_from_(std::move(tenant_from)), audit_(audit) {}

  absl::StatusOr<trust::Identity> Resolve(const ::grpc::ServerContext& ctx) const;
  // Resolve, then the role: `admin` needs the admin role, otherwise pages or admin.
  // UNAUTHENTICATED or PERMISSION_DENIED (counted and logged) as a gRPC status.
  ::grpc::Status Authorize(const ::grpc::ServerContext& ctx, bool admin, const char* method,
                           trust::Identity* out) const;
  trust::Audit* audit() const { return audit_; }
  const trust::TenantTable& tenants() const { return tenants_; }

 private:
  trust::TenantTable tenants_;
  std::string tenant_from_ = "cn";
  trust::Audit* audit_ = nullptr;
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

// For the services' handlers (with `ctx` and a `callers_` resolver in scope): declares `caller`,
// or returns the refusal. `admin`: the call needs the admin role, else pages or admin.
#define TMEM_AUTHORIZE(admin, method)                                                        \
  ::tmem::trust::Identity caller;                                                            \
  if (::grpc::Status auth = callers_->Authorize(*ctx, admin, method, &caller); !auth.ok()) { \
    return auth;                                                                             \
  }

#endif  // TMEM_SERVER_GRPC_CALLER_H_
