#include "server/grpc/page_pool_service.h"

#include <chrono>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "server/grpc/status_convert.h"
#include "server/pool/request_checks.h"

namespace tmem::grpc_service {
namespace {

using ::grpc::ServerContext;
using ::grpc::Status;

// Each Session stream keeps this much for its operations' messages; a larger batch takes more
// blocks (up to 1 MiB each), freed after its reply.
constexpr size_t kSessionArenaFirstBlockBytes = 256 << 10;
constexpr size_t kSessionArenaMaxBlockBytes = 1 << 20;

Status Invalid(const std::string& message) { return Status(::grpc::StatusCode::INVALID_ARGUMENT, message); }

Status CheckBatch(const char* field, int size) {
  return ToGrpc(pool::CheckBatchSize(field, static_cast<size_t>(size)));
}

Status CheckObject(const std::string& where, const std::string& object) {
  return ToGrpc(pool::CheckObjectKeySize(where, object.size()));
}

Status CheckHandles(const google::protobuf::RepeatedPtrField<tmem::v1::Handle>& handles) {
  for (int i = 0; i < handles.size(); ++i) {
    if (Status s = CheckObject(absl::StrCat("handles[", i, "].object"), handles[i].object()); !s.ok()) return s;
  }
  return Status::OK;
}

// Reports the time from construction to destruction to `observer` (if any) as `method`.
class ScopedLatency {
 public:
  ScopedLatency(LatencyObserver* observer, const char* method)
      : observer_(observer), method_(method), start_(std::chrono::steady_clock::now()) {}
  ~ScopedLatency() {
    if (observer_ != nullptr) {
      observer_->ObserveLatency(method_,
                                std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    }
  }
  ScopedLatency(const ScopedLatency&) = delete;
  ScopedLatency& operator=(const ScopedLatency&) = delete;

 private:
  LatencyObserver* const observer_;
  const char* const method_;
  const std::chrono::steady_clock::time_point start_;
};

uint32_t PageBytes(uint32_t requested) { return requested == 0 ? pool::kDefaultPageBytes : requested; }

}  // namespace

Status PagePoolService::Reach(const trust::Identity& caller, uint32_t pool_id, pool::PoolInfo* info) const {
  absl::StatusOr<pool::PoolInfo> got = pool::ReachPool(*engine_, pool_id, caller.tenant, caller.admin);
  if (!got.ok()) return ToGrpc(got.status());
  *info = std::move(*got);
  return Status::OK;
}

Status PagePoolService::CreatePool(ServerContext* ctx, const tmem::v1::CreatePoolRequest* req,
                                   tmem::v1::CreatePoolResponse* resp) {
  ScopedLatency timer(latency_, "CreatePool");
  TMEM_AUTHORIZE(/*admin=*/false, "CreatePool");
  absl::StatusOr<pool::PoolId> id = engine_->CreatePool(PageBytes(req->page_bytes()), caller.tenant);
  if (!id.ok()) return ToGrpc(id.status());
  resp->set_pool_id(*id);
  resp->set_instance_id(engine_->instance_id());
  return Status::OK;
}

Status PagePoolService::CreateSharedPool(ServerContext* ctx, const tmem::v1::CreateSharedPoolRequest* req,
                                         tmem::v1::CreatePoolResponse* resp) {
  ScopedLatency timer(latency_, "CreateSharedPool");
  TMEM_AUTHORIZE(/*admin=*/false, "CreateSharedPool");
  if (req->uuid().size() != 16) {
    return Invalid(absl::StrCat("uuid: ", req->uuid().size(), " bytes; a UUID has exactly 16"));
  }
  // Shared pools are keyed by (authenticated tenant, UUID): the field may only name the caller
  // (an admin may make pools for any tenant).
  const std::string& owner = req->tenant().empty() ? caller.tenant : req->tenant();
  if (owner != caller.tenant && !caller.admin) {
    const std::string msg =
        absl::StrCat("tenant: '", req->tenant(), "' is not the caller's tenant '", caller.tenant, "' (leave it empty)");
    if (callers_->audit() != nullptr) callers_->audit()->Refused("grpc", trust::Audit::Refusal::kPermission, msg);
    return Status(::grpc::StatusCode::PERMISSION_DENIED, msg);
  }
  pool::Uuid uuid;
  std::copy(req->uuid().begin(), req->uuid().end(), uuid.begin());
  absl::StatusOr<pool::PoolId> id = engine_->CreateSharedPool(uuid, PageBytes(req->page_bytes()), owner);
  if (!id.ok()) return ToGrpc(id.status());
  resp->set_pool_id(*id);
  resp->set_instance_id(engine_->instance_id());
  return Status::OK;
}

Status PagePoolService::DestroyPool(ServerContext* ctx, const tmem::v1::DestroyPoolRequest* req,
                                    tmem::v1::DestroyPoolResponse* resp) {
  ScopedLatency timer(latency_, "DestroyPool");
  TMEM_AUTHORIZE(/*admin=*/false, "DestroyPool");
  pool::PoolInfo info;
  if (Status s = Reach(caller, req->pool_id(), &info); !s.ok()) return s;
  Status s = ToGrpc(engine_->DestroyPool(req->pool_id()));
  if (s.ok() && callers_->audit() != nullptr && info.tenant != caller.tenant) {
    callers_->audit()->Mutation(caller, absl::StrCat("DestroyPool ", info.id, " of tenant '", info.tenant, "'"));
  }
  resp->set_instance_id(engine_->instance_id());
  return s;
}

Status PagePoolService::PutPages(ServerContext* ctx, const tmem::v1::PutPagesRequest* req,
                                 tmem::v1::PutPagesResponse* resp) {
  ScopedLatency timer(latency_, "PutPages");
  TMEM_AUTHORIZE(/*admin=*/false, "PutPages");
  Status s = DoPutPages(caller, *req);
  if (s.ok()) resp->set_instance_id(engine_->instance_id());
  return s;
}

Status PagePoolService::DoPutPages(const trust::Identity& caller, const tmem::v1::PutPagesRequest& req) {
  if (Status s = CheckBatch("pages", req.pages_size()); !s.ok()) return s;
  pool::PoolInfo info;
  if (Status s = Reach(caller, req.pool_id(), &info); !s.ok()) return s;
  // Check every page before storing any, so that a bad request has no effect.
  for (int i = 0; i < req.pages_size(); ++i) {
    const tmem::v1::PagePut& p = req.pages(i);
    if (Status s = CheckObject(absl::StrCat("pages[", i, "].handle.object"), p.handle().object()); !s.ok()) return s;
    if (Status s = ToGrpc(pool::CheckPageSize(absl::StrCat("pages[", i, "].data"), p.data().size(), info)); !s.ok()) {
      return s;
    }
  }
  std::vector<pool::PoolEngine::PagePut> puts;
  puts.reserve(req.pages_size());
  for (const tmem::v1::PagePut& p : req.pages()) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(p.data().data());
    puts.push_back({p.handle().object(), p.handle().index(), std::span<const uint8_t>(bytes, p.data().size())});
  }
  return ToGrpc(engine_->PutMany(req.pool_id(), puts));
}

Status PagePoolService::GetPages(ServerContext* ctx, const tmem::v1::GetPagesRequest* req,
                                 tmem::v1::GetPagesResponse* resp) {
  ScopedLatency timer(latency_, "GetPages");
  TMEM_AUTHORIZE(/*admin=*/false, "GetPages");
  return DoGetPages(caller, *req, resp);
}

Status PagePoolService::DoGetPages(const trust::Identity& caller, const tmem::v1::GetPagesRequest& req,
                                   tmem::v1::GetPagesResponse* resp) {
  if (Status s = CheckBatch("handles", req.handles_size()); !s.ok()) return s;
  pool::PoolInfo info;
  if (Status s = Reach(caller, req.pool_id(), &info); !s.ok()) return s;
  if (Status s = CheckHandles(req.handles()); !s.ok()) return s;
  // One engine call for the batch: one index lookup, device reads in flight together. A reply
  // page is allocated only for a handle the index has: a batch of misses costs no page memory.
  std::vector<pool::PoolEngine::PageGet> gets;
  gets.reserve(req.handles_size());
  for (const tmem::v1::Handle& h : req.handles()) {
    resp->add_results();
    gets.push_back({h.object(), h.index(), {}});
  }
  auto buffer_for = [&](size_t i) {
    std::string* data = resp->mutable_results(static_cast<int>(i))->mutable_data();
    data->resize(info.page_bytes);
    return std::span<uint8_t>(reinterpret_cast<uint8_t*>(data->data()), data->size());
  };
  absl::StatusOr<std::vector<pool::GetOutcome>> got = engine_->GetMany(req.pool_id(), gets, buffer_for);
  if (!got.ok()) {
    resp->clear_results();
    return ToGrpc(got.status());
  }
  for (int i = 0; i < resp->results_size(); ++i) {
    tmem::v1::PageResult* r = resp->mutable_results(i);
    r->set_hit((*got)[i] == pool::GetOutcome::kHit);
    if (!r->hit()) r->clear_data();
  }
  resp->set_instance_id(engine_->instance_id());
  return Status::OK;
}

Status PagePoolService::FlushPages(ServerContext* ctx, const tmem::v1::FlushPagesRequest* req,
                                   tmem::v1::FlushPagesResponse* resp) {
  ScopedLatency timer(latency_, "FlushPages");
  TMEM_AUTHORIZE(/*admin=*/false, "FlushPages");
  Status s = DoFlushPages(caller, *req);
  if (s.ok()) resp->set_instance_id(engine_->instance_id());
  return s;
}

Status PagePoolService::DoFlushPages(const trust::Identity& caller, const tmem::v1::FlushPagesRequest& req) {
  if (Status s = CheckBatch("handles", req.handles_size()); !s.ok()) return s;
  pool::PoolInfo info;
  if (Status s = Reach(caller, req.pool_id(), &info); !s.ok()) return s;
  if (Status s = CheckHandles(req.handles()); !s.ok()) return s;
  for (const tmem::v1::Handle& h : req.handles()) {
    absl::Status s = engine_->FlushPage(req.pool_id(), h.object(), h.index());
    if (!s.ok()) return ToGrpc(s);
  }
  return Status::OK;
}

Status PagePoolService::FlushObject(ServerContext* ctx, const tmem::v1::FlushObjectRequest* req,
                                    tmem::v1::FlushObjectResponse* resp) {
  ScopedLatency timer(latency_, "FlushObject");
  TMEM_AUTHORIZE(/*admin=*/false, "FlushObject");
  Status s = DoFlushObject(caller, *req);
  resp->set_instance_id(engine_->instance_id());
  return s;
}

Status PagePoolService::DoFlushObject(const trust::Identity& caller, const tmem::v1::FlushObjectRequest& req) {
  if (Status s = CheckObject("object", req.object()); !s.ok()) return s;
  pool::PoolInfo info;
  if (Status s = Reach(caller, req.pool_id(), &info); !s.ok()) return s;
  return ToGrpc(engine_->FlushObject(req.pool_id(), req.object()));
}

Status PagePoolService::FlushPool(ServerContext* ctx, const tmem::v1::FlushPoolRequest* req,
                                  tmem::v1::FlushPoolResponse* resp) {
  ScopedLatency timer(latency_, "FlushPool");
  TMEM_AUTHORIZE(/*admin=*/false, "FlushPool");
  Status s = DoFlushPool(caller, *req);
  resp->set_instance_id(engine_->instance_id());
  return s;
}

Status PagePoolService::DoFlushPool(const trust::Identity& caller, const tmem::v1::FlushPoolRequest& req) {
  pool::PoolInfo info;
  if (Status s = Reach(caller, req.pool_id(), &info); !s.ok()) return s;
  return ToGrpc(engine_->FlushPool(req.pool_id()));
}

void PagePoolService::CancelSessions() {
  MutexLock lock(&open_mu_);
  cancelled_ = true;
  for (ServerContext* ctx : open_) ctx->TryCancel();
}

Status PagePoolService::Session(
    ServerContext* ctx, ::grpc::ServerReaderWriter<tmem::v1::SessionResponse, tmem::v1::SessionRequest>* stream) {
  // Each operation's request and reply live on an arena that is reset after the reply is
  // written: the messages and their string objects cost no heap allocation of their own and are
  // freed at once. (The pages' bytes still come from malloc: protobuf 3.21 keeps a bytes
  // field's buffer in a std::string even on an arena.)
  google::protobuf::ArenaOptions arena_options;
  std::vector<char> first_block(kSessionArenaFirstBlockBytes);
  arena_options.initial_block = first_block.data();
  arena_options.initial_block_size = first_block.size();
  arena_options.max_block_size = kSessionArenaMaxBlockBytes;
  google::protobuf::Arena arena(arena_options);
  // The stream's connection proved its tenant once; every op runs as it.
  trust::Identity caller;
  if (Status auth = callers_->Authorize(*ctx, /*admin=*/false, "Session", &caller); !auth.ok()) return auth;
  TenantSlots::Slot session_slot;
  if (Status full = sessions_.Acquire(caller.tenant, &session_slot); !full.ok()) return full;
  {
    MutexLock lock(&open_mu_);
    if (cancelled_) return Status(::grpc::StatusCode::UNAVAILABLE, "the server is stopping");
    open_.insert(ctx);
  }
  struct Unregister {
    PagePoolService* self;
    ServerContext* ctx;
    ~Unregister() {
      MutexLock lock(&self->open_mu_);
      self->open_.erase(ctx);
    }
  } unregister{this, ctx};
  bool any = false;
  uint64_t last_op = 0;
  while (true) {
    arena.Reset();
    auto& req = *google::protobuf::Arena::CreateMessage<tmem::v1::SessionRequest>(&arena);
    if (!stream->Read(&req)) break;
    ScopedLatency timer(latency_, "Session.op");
    auto& resp = *google::protobuf::Arena::CreateMessage<tmem::v1::SessionResponse>(&arena);
    resp.set_op_id(req.op_id());
    Status st;
    if (any && req.op_id() <= last_op) {
      st = Invalid(absl::StrCat("op_id ", req.op_id(), " is not above the previous op_id ", last_op,
                                " on this stream (duplicate or reordered)"));
    } else {
      any = true;
      last_op = req.op_id();
      switch (req.op_case()) {
        case tmem::v1::SessionRequest::kPutPages:
          st = DoPutPages(caller, req.put_pages());
          break;
        case tmem::v1::SessionRequest::kGetPages:
          st = DoGetPages(caller, req.get_pages(), resp.mutable_get_pages());
          break;
        case tmem::v1::SessionRequest::kFlushPages:
          st = DoFlushPages(caller, req.flush_pages());
          break;
        case tmem::v1::SessionRequest::kFlushObject:
          st = DoFlushObject(caller, req.flush_object());
          break;
        case tmem::v1::SessionRequest::kFlushPool:
          st = DoFlushPool(caller, req.flush_pool());
          break;
        case tmem::v1::SessionRequest::OP_NOT_SET:
          st = Invalid(absl::StrCat("op ", req.op_id(), " carries no operation"));
          break;
      }
    }
    resp.set_code(st.error_code());
    resp.set_message(st.error_message());
    if (!st.ok()) resp.clear_get_pages();
    resp.set_instance_id(engine_->instance_id());
    if (!stream->Write(resp)) break;
  }
  return Status::OK;
}

}  // namespace tmem::grpc_service
