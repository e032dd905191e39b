#include "client/channel.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace tmem::client {
namespace {

absl::StatusOr<std::string> ReadPem(const char* what, const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": cannot read it"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<ChannelFactory> ChannelFactory::Create(const TlsClientOptions& tls) {
  ChannelFactory f;
  if (!tls.enabled()) {
    if (!tls.cert.empty() || !tls.key.empty()) {
      return absl::InvalidArgumentError("a client certificate needs the CA too (--tls-ca)");
    }
    return f;
  }
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError("the client certificate and its key go together (--tls-cert, --tls-key)");
  }
  ::grpc::SslCredentialsOptions o;
  absl::StatusOr<std::string> ca = ReadPem("CA", tls.ca);
  if (!ca.ok()) return ca.status();
  o.pem_root_certs = *ca;
  if (!tls.cert.empty()) {
    absl::StatusOr<std::string> cert = ReadPem("client certificate", tls.cert);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem("client key", tls.key);
    if (!key.ok()) return key.status();
    o.pem_cert_chain = *cert;
    o.pem_private_key = *key;
  }
  f.creds_ = ::grpc::SslCredentials(o);
  f.server_name_ = tls.server_name;
  return f;
}

std::shared_ptr<::grpc::Channel> ChannelFactory::Make(const std::string& address) const {
  ::grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
  return ::grpc::CreateCustomChannel(address, creds_, args);
}

}  // namespace tmem::client
