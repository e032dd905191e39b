// How clients reach tmemd: plaintext (loopback), or TLS with the node's client certificate —
// the CA that signed tmemd's certificate, and the client's certificate and key, which name its
// tenant (docs/trust.md).
#ifndef TMEM_CLIENT_CHANNEL_H_
#define TMEM_CLIENT_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tmem::client {

struct TlsClientOptions {
  std::string ca;           // PEM: the CA that signed the servers' certificates ("" = plaintext)
  std::string cert;         // PEM: this client's certificate (its CN or SAN names the tenant)
  std::string key;          // PEM: its private key
  std::string server_name;  // the name to verify in the servers' certificates ("": the address's host)
  // Wire streams: TLS 1.3 records sealed and opened by common/tls_records after the handshake
  // (false: GnuTLS's record layer, which copies each record twice more).
  bool own_records = true;
  bool enabled() const { return !ca.empty(); }
};

// A channel factory: reads the files once (InvalidArgument naming an unreadable one), then makes
// channels to any address with the same credentials.
class ChannelFactory {
 public:
  static absl::StatusOr<ChannelFactory> Create(const TlsClientOptions& tls);
  ChannelFactory() : creds_(::grpc::InsecureChannelCredentials()) {}
  std::shared_ptr<::grpc::Channel> Make(const std::string& address) const;

 private:
  std::shared_ptr<::grpc::ChannelCredentials> creds_;
  std::string server_name_;
};

}  // namespace tmem::client

#endif  // TMEM_CLIENT_CHANNEL_H_
