// libFuzzer target over the gRPC request handlers: tmem.v1.PagePool and tmem.v1.Admin on an
// in-process service (a memory device). The input is
// a sequence of calls, each [method u8][length u16 LE][a serialized request of that method]; a
// Session call's bytes are a sequence of [length u16 LE][SessionRequest]. Unary calls run the
// handlers directly; Session streams go through a gRPC server (in-process channel). Every call must get an
// answer (any status) without a crash, a sanitizer report or a hang.
//   scripts/fuzz_grpc.sh [RUNS]      (libFuzzer, 10^6 runs)
//   //server/grpc:grpc_fuzz_test     (the default suite: the seeds and a few thousand mutations)
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "google/protobuf/stubs/logging.h"
#include "proto/tmem_clients.h"
#include "server/grpc/admin_service.h"
#include "server/grpc/page_pool_service.h"
#include "server/pool/pool_test_util.h"

namespace {

using tmem::pool::testing::EngineHarness;

#if defined(__SANITIZE_THREAD__)
constexpr bool kTcp = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kTcp = true;
#else
constexpr bool kTcp = false;
#endif
#else
constexpr bool kTcp = false;
#endif

struct Rig {
  EngineHarness harness{64, 128 << 10};
  std::unique_ptr<tmem::pool::PoolEngine> engine;
  std::unique_ptr<tmem::grpc_service::PagePoolService> pages;
  std::unique_ptr<tmem::grpc_service::AdminService> admin;
  std::unique_ptr<::grpc::Server> server;
  std::unique_ptr<tmem::v1::PagePoolClient> sessions;  // the Session streams' client
  Rig() {
    // At most 128 pools (the tenants' pool quota, which the inputs reach and test): without a
    // bound the pools that a million inputs create make every ListPools slower than the last
    // (40% of the time after 60,000 runs).
    tmem::pool::EngineOptions o = harness.Options();
    o.quota_of = [](std::string_view) { return tmem::pool::EngineOptions::OwnerQuota{.max_pools = 128}; };
    auto opened = tmem::pool::PoolEngine::Open(o);
    if (!opened.ok()) abort();
    engine = std::move(*opened);
    tmem::pool::PoolEngine& e = *engine;
    pages = std::make_unique<tmem::grpc_service::PagePoolService>(&e, nullptr, nullptr, 4);
    admin = std::make_unique<tmem::grpc_service::AdminService>(&e);
    // Session streams go through gRPC's in-process channel (fast), except under ThreadSanitizer:
    // that transport hands buffers between threads inside uninstrumented libgrpc, which TSan
    // reports as races, so there they go over loopback TCP.
    ::grpc::ServerBuilder b;
    int port = 0;
    if (kTcp) b.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port);
    b.SetMaxReceiveMessageSize(tmem::grpc_service::kMaxMessageBytes);
    b.RegisterService(pages.get());
    b.RegisterService(admin.get());
    server = b.BuildAndStart();
    if (server == nullptr || (kTcp && port == 0)) abort();
    ::grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    auto channel = kTcp ? ::grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                                      ::grpc::InsecureChannelCredentials(), args)
                        : server->InProcessChannel(args);
    sessions = tmem::v1::PagePool::NewStub(channel);
  }
};

Rig& R() {
  static Rig* rig = new Rig();
  return *rig;
}

// A unary call runs the handler directly (no transport: the fuzzer's time goes to the
// handlers), with a context that has no peer, i.e. the local tenant.
template <typename Req, typename Resp, typename Call>
void Unary(const std::string& bytes, Call call) {
  Req req;
  if (!req.ParseFromString(bytes)) return;
  Resp resp;
  ::grpc::ServerContext ctx;
  call(&ctx, &req, &resp);
}

void Session(const std::string& bytes) {
  ::grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = R().sessions->Session(&ctx);
  // Replies are read while ops are written (a stream's replies may wait for the reader).
  size_t answered = 0;
  std::thread reader([&] {
    tmem::v1::SessionResponse resp;
    while (stream->Read(&resp)) ++answered;
  });
  size_t at = 0, sent = 0;
  while (at + 2 <= bytes.size()) {
    const size_t len = static_cast<uint8_t>(bytes[at]) | (static_cast<uint8_t>(bytes[at + 1]) << 8);
    at += 2;
    tmem::v1::SessionRequest r;
    if (!r.ParseFromString(bytes.substr(at, len))) break;
    at += len;
    if (!stream->Write(r)) break;
    ++sent;
  }
  stream->WritesDone();
  reader.join();
  ::grpc::Status s = stream->Finish();
  if (s.error_code() == ::grpc::StatusCode::DEADLINE_EXCEEDED) abort();
  if (s.ok() && answered != sent) {
    std::fprintf(stderr, "Session: %zu ops sent, %zu answered\n", sent, answered);
    abort();  // every op gets its reply
  }
}

void RunCall(uint8_t method, const std::string& b) {
  auto& p = *R().pages;
  auto& a = *R().admin;
  using namespace tmem::v1;
  using Pages = tmem::grpc_service::PagePoolService;
  using Admin = tmem::grpc_service::AdminService;
  auto run = [&](auto req_type, auto resp_type, auto method_ptr, auto& service) {
    using Req = decltype(req_type);
    using Resp = decltype(resp_type);
    Unary<Req, Resp>(b,
                     [&](::grpc::ServerContext* c, const Req* q, Resp* r) { return (service.*method_ptr)(c, q, r); });
  };
  switch (method % 13) {
    case 0:
      return run(CreatePoolRequest{}, CreatePoolResponse{}, &Pages::CreatePool, p);
    case 1:
      return run(CreateSharedPoolRequest{}, CreatePoolResponse{}, &Pages::CreateSharedPool, p);
    case 2:
      return run(DestroyPoolRequest{}, DestroyPoolResponse{}, &Pages::DestroyPool, p);
    case 3:
      return run(PutPagesRequest{}, PutPagesResponse{}, &Pages::PutPages, p);
    case 4:
      return run(GetPagesRequest{}, GetPagesResponse{}, &Pages::GetPages, p);
    case 5:
      return run(FlushPagesRequest{}, FlushPagesResponse{}, &Pages::FlushPages, p);
    case 6:
      return run(FlushObjectRequest{}, FlushObjectResponse{}, &Pages::FlushObject, p);
    case 7:
      return run(FlushPoolRequest{}, FlushPoolResponse{}, &Pages::FlushPool, p);
    case 8:
      return Session(b);
    case 9:
      return run(ServerInfoRequest{}, ServerInfoResponse{}, &Admin::ServerInfo, a);
    case 10:
      return run(ListPoolsRequest{}, ListPoolsResponse{}, &Admin::ListPools, a);
    case 11:
      return run(PoolStatsRequest{}, PoolStatsResponse{}, &Admin::PoolStats, a);
    default:
      return run(ExportControlRequest{}, ExportControlResponse{}, &Admin::ExportControl, a);
  }
}

// `bytes` after their length (u16 LE): the framing of calls and of Session ops.
std::string LengthPrefixed(const std::string& bytes) {
  std::string out;
  out.push_back(static_cast<char>(bytes.size() & 0xFF));
  out.push_back(static_cast<char>(bytes.size() >> 8));
  return out + bytes;
}

std::string Call(uint8_t method, const std::string& bytes) {
  return std::string(1, static_cast<char>(method)) + LengthPrefixed(bytes);
}

std::string Framed(const google::protobuf::Message& m) { return LengthPrefixed(m.SerializeAsString()); }

}  // namespace

// Seed inputs: valid calls of every method (the fuzzer mutates from there).
std::vector<std::string> TmemFuzzSeeds() {
  using namespace tmem::v1;
  std::vector<std::string> seeds;
  CreateSharedPoolRequest shared;
  shared.set_uuid(std::string(16, '\x07'));
  shared.set_page_bytes(512);
  CreatePoolRequest priv;
  priv.set_page_bytes(512);
  PutPagesRequest put;
  put.set_pool_id(1);
  for (int i = 0; i < 3; ++i) {
    auto* pg = put.add_pages();
    pg->mutable_handle()->set_object("obj");
    pg->mutable_handle()->set_index(i);
    pg->set_data(std::string(512, static_cast<char>('a' + i)));
  }
  GetPagesRequest get;
  get.set_pool_id(1);
  for (int i = 0; i < 4; ++i) {
    auto* h = get.add_handles();
    h->set_object("obj");
    h->set_index(i);
  }
  FlushPagesRequest fp;
  fp.set_pool_id(1);
  *fp.add_handles() = get.handles(0);
  FlushObjectRequest fo;
  fo.set_pool_id(1);
  fo.set_object("obj");
  FlushPoolRequest fl;
  fl.set_pool_id(1);
  DestroyPoolRequest d;
  d.set_pool_id(2);
  PoolStatsRequest ps;
  ps.set_pool_id(1);
  ExportControlRequest ec;
  ec.set_export_name("disk0");
  ec.set_action(ExportControlRequest::DRAIN);
  SessionRequest s1, s2, s3;
  s1.set_op_id(1);
  *s1.mutable_put_pages() = put;
  s2.set_op_id(2);
  *s2.mutable_get_pages() = get;
  s3.set_op_id(2);  // not above the previous op id
  *s3.mutable_flush_object() = fo;
  seeds.push_back(Call(1, shared.SerializeAsString()) + Call(3, put.SerializeAsString()) +
                  Call(4, get.SerializeAsString()) + Call(5, fp.SerializeAsString()) + Call(6, fo.SerializeAsString()) +
                  Call(7, fl.SerializeAsString()));
  seeds.push_back(Call(0, priv.SerializeAsString()) + Call(8, Framed(s1) + Framed(s2) + Framed(s3)) +
                  Call(11, ps.SerializeAsString()) + Call(10, "") + Call(9, "") + Call(2, d.SerializeAsString()));
  seeds.push_back(Call(12, ec.SerializeAsString()) + Call(4, get.SerializeAsString()));
  return seeds;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // scripts/fuzz_grpc.sh writes the seeds into the corpus through this.
  if (const char* dir = std::getenv("TMEM_FUZZ_WRITE_SEEDS")) {
    int n = 0;
    for (const std::string& s : TmemFuzzSeeds()) std::ofstream(std::string(dir) + "/seed" + std::to_string(n++)) << s;
  }
  tmem::SetMinLogLevel(tmem::LogLevel::kError);
  google::protobuf::SetLogHandler(nullptr);  // bad UTF-8 in a string field is expected here
  R();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  size_t at = 0;
  for (int calls = 0; at + 3 <= in.size() && calls < 32; ++calls) {
    const uint8_t method = static_cast<uint8_t>(in[at]);
    const size_t len = static_cast<uint8_t>(in[at + 1]) | (static_cast<uint8_t>(in[at + 2]) << 8);
    at += 3;
    const std::string bytes = in.substr(at, len);
    at += bytes.size();
    RunCall(method, bytes);
  }
  return 0;
}
