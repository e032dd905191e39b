// grpc_sink: the tmem.v1.PagePool transport without storage, the ceiling the remote pages
// benchmark measures tmemd's puts against.
//
// It serves CreatePool / CreateSharedPool (always pool 1) and the Session stream exactly as tmemd
// does — the same server options, each operation parsed in full on an arena and answered in
// order — but a put's pages are only counted, never stored. Whatever rate libtmemclient reaches
// against it is what gRPC and protobuf on this machine allow before tmemd does any work of its
// own. Other operations are answered FAILED_PRECONDITION.
//   grpc_sink --listen=127.0.0.1:PORT
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/arena.h"
#include "proto/tmem.grpc.pb.h"
#include "server/grpc/page_pool_service.h"

namespace {

constexpr uint64_t kInstance = 1;

class Sink final : public tmem::v1::PagePool::Service {
 public:
  ::grpc::Status CreatePool(::grpc::ServerContext*, const tmem::v1::CreatePoolRequest*,
                            tmem::v1::CreatePoolResponse* resp) override {
    resp->set_pool_id(1);
    resp->set_instance_id(kInstance);
    return ::grpc::Status::OK;
  }
  ::grpc::Status CreateSharedPool(::grpc::ServerContext*, const tmem::v1::CreateSharedPoolRequest*,
                                  tmem::v1::CreatePoolResponse* resp) override {
    resp->set_pool_id(1);
    resp->set_instance_id(kInstance);
    return ::grpc::Status::OK;
  }
  ::grpc::Status Session(
      ::grpc::ServerContext*,
      ::grpc::ServerReaderWriter<tmem::v1::SessionResponse, tmem::v1::SessionRequest>* stream) override {
    google::protobuf::ArenaOptions options;
    std::vector<char> first_block(256 << 10);
    options.initial_block = first_block.data();
    options.initial_block_size = first_block.size();
    options.max_block_size = 1 << 20;
    google::protobuf::Arena arena(options);
    while (true) {
      arena.Reset();
      auto& req = *google::protobuf::Arena::CreateMessage<tmem::v1::SessionRequest>(&arena);
      if (!stream->Read(&req)) break;
      auto& resp = *google::protobuf::Arena::CreateMessage<tmem::v1::SessionResponse>(&arena);
      resp.set_op_id(req.op_id());
      resp.set_instance_id(kInstance);
      if (req.op_case() == tmem::v1::SessionRequest::kPutPages) {
        uint64_t bytes = 0;
        for (const auto& p : req.put_pages().pages()) bytes += p.data().size();
        bytes_ += bytes;
      } else {
        resp.set_code(static_cast<int>(::grpc::StatusCode::FAILED_PRECONDITION));
        resp.set_message("the sink takes only puts");
      }
      if (!stream->Write(resp)) break;
    }
    return ::grpc::Status::OK;
  }

 private:
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace

int main(int argc, char** argv) {
  std::string listen;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--listen=", 0) == 0) {
      listen = a.substr(9);
    } else {
      std::fprintf(stderr, "grpc_sink: unknown flag %s\nusage: grpc_sink --listen=HOST:PORT\n", argv[i]);
      return 2;
    }
  }
  if (listen.empty()) {
    std::fprintf(stderr, "usage: grpc_sink --listen=HOST:PORT\n");
    return 2;
  }
  // Blocked before gRPC starts its threads, so that SIGTERM / SIGINT reach only sigwait below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  Sink sink;
  ::grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, ::grpc::InsecureServerCredentials(), &port);
  // As tmemd sets them (server/main/tmemd.cc), with its default handler thread count.
  builder.SetMaxReceiveMessageSize(tmem::grpc_service::kMaxMessageBytes);
  builder.SetSyncServerOption(::grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(::grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 16);
  builder.RegisterService(&sink);
  std::unique_ptr<::grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "grpc_sink: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  int sig = 0;
  sigwait(&set, &sig);
  server->Shutdown();
  return 0;
}
