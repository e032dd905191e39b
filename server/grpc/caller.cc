#include "server/grpc/caller.h"

#include <cassert>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tmem::grpc_service {

absl::StatusOr<trust::Identity> CallerResolver::Resolve(const ::grpc::ServerContext& ctx) const {
  std::shared_ptr<const ::grpc::AuthContext> auth = ctx.auth_context();
  bool tls = false;
  if (auth != nullptr) {
    for (const ::grpc::string_ref& v : auth->FindPropertyValues("transport_security_type")) {
      const std::string type(v.data(), v.size());
      tls |= type == "ssl" || type == "tls";
    }
  }
  if (!tls) return tenants_.Local();
  // The handshake verified the certificate against tls.ca (ClientCertificateVerifier) before
  // the call reached us; only the names remain.
  std::vector<std::string> names;
  auto add = [&](const char* property) {
    for (const ::grpc::string_ref& v : auth->FindPropertyValues(property)) names.emplace_back(v.data(), v.size());
  };
  if (tenant_from_ != "san") add("x509_common_name");
  if (tenant_from_ != "cn") add("x509_subject_alternative_name");
  std::optional<trust::Identity> id = tenants_.ByCertificate(names);
  if (!id.has_value()) {
    const std::string detail = absl::StrCat("client certificate (",
                                            tenant_from_ == "san"  ? "SANs"
                                            : tenant_from_ == "cn" ? "CN"
                                                                   : "CN/SANs",
                                            " '", absl::StrJoin(names, "', '"), "') names no configured tenant");
    if (audit_ != nullptr) audit_->Refused("grpc", trust::Audit::Refusal::kUnknownTenant, detail);
    return absl::UnauthenticatedError(detail);
  }
  return *id;
}

::grpc::Status CallerResolver::Authorize(const ::grpc::ServerContext& ctx, bool admin, const char* method,
                                         trust::Identity* out) const {
  absl::StatusOr<trust::Identity> id = Resolve(ctx);
  if (!id.ok()) return ::grpc::Status(::grpc::StatusCode::UNAUTHENTICATED, std::string(id.status().message()));
  const bool allowed = admin ? id->admin : (id->pages || id->admin);
  if (!allowed) {
    const std::string msg = absl::StrCat(method, " needs the ", admin ? "admin" : "pages", " role; tenant '",
                                         id->tenant, "' does not have it");
    if (audit_ != nullptr) audit_->Refused("grpc", trust::Audit::Refusal::kPermission, msg);
    return ::grpc::Status(::grpc::StatusCode::PERMISSION_DENIED, msg);
  }
  *out = std::move(*id);
  return ::grpc::Status::OK;
}

::grpc::Status CallerResolver::AuthorizeCall(const ::grpc::ServerContext& ctx, bool admin, const char* method,
                                             trust::Identity* out, TenantSlots::Slot* slot) const {
  if (::grpc::Status s = Authorize(ctx, admin, method, out); !s.ok()) return s;
  return calls_.Acquire(out->tenant, slot);
}

::grpc::Status TenantSlots::Acquire(const std::string& tenant, Slot* slot) {
  assert(slot->count_ == nullptr);  // a slot holds one place
  std::atomic<int>* count;
  {
    MutexLock lock(&mu_);
    count = &open_[tenant];
  }
  const int held = count->fetch_add(1, std::memory_order_acq_rel);
  if (held >= max_) {
    count->fetch_sub(1, std::memory_order_release);
    return ::grpc::Status(
        ::grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("tenant '", tenant, "' has ", held, " ", what_, " (at most ", max_, ", ", setting_, ")"));
  }
  slot->count_ = count;
  return ::grpc::Status::OK;
}

int TenantSlots::in_flight(const std::string& tenant) const {
  MutexLock lock(&mu_);
  auto it = open_.find(tenant);
  return it == open_.end() ? 0 : it->second.load(std::memory_order_acquire);
}

bool ClientCertificateVerifier::Verify(::grpc::experimental::TlsCustomVerificationCheckRequest* request,
                                       std::function<void(::grpc::Status)> /*callback*/, ::grpc::Status* sync_status) {
  const ::grpc::string_ref leaf = request->peer_cert();
  const ::grpc::string_ref chain = request->peer_cert_full_chain();
  absl::Status s = tls_->VerifyClientCertificate(absl::string_view(leaf.data(), leaf.size()),
                                                 absl::string_view(chain.data(), chain.size()));
  if (s.ok()) {
    *sync_status = ::grpc::Status::OK;
  } else {
    if (audit_ != nullptr) audit_->Refused("grpc", trust::Audit::Refusal::kTls, s.message());
    *sync_status = ::grpc::Status(::grpc::StatusCode::UNAUTHENTICATED, std::string(s.message()));
  }
  return true;  // answered synchronously
}

}  // namespace tmem::grpc_service
