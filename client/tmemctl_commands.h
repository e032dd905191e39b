// What tmemctl's commands share: the connection to tmemd, the default deadline, the error
// messages and flag helpers. Each command is a function `int Cmd...(Client&, const Flags&)`
// returning the exit status (tmemctl.cc holds the table of commands).
#ifndef TMEM_CLIENT_TMEMCTL_COMMANDS_H_
#define TMEM_CLIENT_TMEMCTL_COMMANDS_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/channel.h"
#include "common/flags.h"
#include "proto/tmem_clients.h"

namespace tmem::ctl {

// Prints why and every command's usage; exit status 2.
int Usage(const std::string& why);
// Reports a failed call (tmemd unreachable, or the error it answered); exit status 1.
int Failed(const std::string& what, const ::grpc::Status& s, const std::string& server);
// 32 hex digits (dashes allowed) into 16 bytes; false when malformed.
bool HexToBytes(const std::string& hex, std::string* out);
// --pool=N, required and in range.
absl::StatusOr<uint32_t> PoolFlag(const Flags& f);

class Client {
 public:
  // `timeout_given`: the user chose --timeout-ms, which then bounds even the calls that
  // otherwise wait as long as the work takes (drain).
  Client(const client::ChannelFactory& channels, const std::string& server, int64_t timeout_ms, bool timeout_given)
      : server_(server), timeout_ms_(timeout_ms), timeout_given_(timeout_given) {
    channel_ = channels.Make(server);
    pool_ = tmem::v1::PagePool::NewStub(channel_);
    admin_ = tmem::v1::Admin::NewStub(channel_);
  }
  void Prepare(::grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms_));
  }
  // For a call that lasts as long as its work (draining a large cache over a slow store): the
  // server must answer the connection within the timeout, the call itself has no deadline
  // unless --timeout-ms was given. False when the server cannot be reached.
  bool PrepareUnbounded(::grpc::ClientContext* ctx) const {
    const auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms_);
    if (timeout_given_) {
      ctx->set_deadline(deadline);
      return true;
    }
    return channel_->WaitForConnected(deadline);
  }
  bool timeout_given() const { return timeout_given_; }
  const std::shared_ptr<::grpc::Channel>& channel() const { return channel_; }
  tmem::v1::PagePoolClient& pool() { return *pool_; }
  tmem::v1::AdminClient& admin() { return *admin_; }
  const std::string& server() const { return server_; }

 private:
  const std::string server_;
  const int64_t timeout_ms_;
  const bool timeout_given_;
  std::shared_ptr<::grpc::Channel> channel_;
  std::unique_ptr<tmem::v1::PagePoolClient> pool_;
  std::unique_ptr<tmem::v1::AdminClient> admin_;
};

// A context with the default deadline.
struct Call {
  explicit Call(const Client& c) { c.Prepare(&ctx); }
  ::grpc::ClientContext ctx;
};

// The page pool commands (tmemctl_pages.cc).
int CmdCreatePool(Client& c, const Flags& f);
int CmdDestroyPool(Client& c, const Flags& f);
int CmdStats(Client& c, const Flags& f);
int CmdFlush(Client& c, const Flags& f);
int CmdPut(Client& c, const Flags& f);
int CmdGet(Client& c, const Flags& f);

}  // namespace tmem::ctl

#endif  // TMEM_CLIENT_TMEMCTL_COMMANDS_H_
