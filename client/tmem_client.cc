#include "client/tmem_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "client/dns_members.h"
#include "client/session_stream.h"
#include "client/tmem_client_parts.h"
#include "client/wire_stream.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "proto/tmem_clients.h"

namespace tmem::client {

TmemClient::TmemClient(const ClientOptions& options) : options_(options) {}

TmemClient::~TmemClient() {
  {
    MutexLock lock(&refresh_mu_);
    stopping_ = true;
    refresh_cv_.SignalAll();
  }
  if (refresher_.joinable()) refresher_.join();
}

absl::StatusOr<std::unique_ptr<TmemClient>> TmemClient::Create(const ClientOptions& options) {
  if (options.servers.empty()) return absl::InvalidArgumentError("no servers");
  if (std::set<std::string>(options.servers.begin(), options.servers.end()).size() != options.servers.size()) {
    return absl::InvalidArgumentError("a server is listed twice");
  }
  if (options.call_timeout_ms <= 0) return absl::InvalidArgumentError("call timeout must be positive");
  if (options.streams_per_server < 1 || options.streams_per_server > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("streams per server: ", options.streams_per_server, "; want 1 to 64"));
  }
  if (options.reconnect_min_ms <= 0 || options.reconnect_max_ms < options.reconnect_min_ms) {
    return absl::InvalidArgumentError("reconnect backoff: want 0 < min <= max");
  }
  if (options.max_batch_pages < 1) return absl::InvalidArgumentError("max batch pages must be positive");
  absl::StatusOr<ChannelFactory> channels = ChannelFactory::Create(options.tls);
  if (!channels.ok()) return channels.status();
  std::unique_ptr<TmemClient> c(new TmemClient(options));
  c->channels_ = *channels;
  if (options.transport != "auto" && options.transport != "wire" && options.transport != "grpc") {
    return absl::InvalidArgumentError(absl::StrCat("transport '", options.transport, "': want auto, wire or grpc"));
  }
  if (options.tls.enabled() && options.transport != "grpc") {
    auto creds = WireTlsCredentials::Load(options.tls.ca, options.tls.cert, options.tls.key);
    if (!creds.ok()) return creds.status();
    c->wire_tls_ = *creds;
  }
  for (const std::string& entry : options.servers) {
    absl::StatusOr<std::optional<DnsTarget>> dns = ParseDnsTarget(entry);
    if (!dns.ok()) return dns.status();
    if (dns->has_value()) {
      c->dns_targets_.emplace_back((*dns)->name, (*dns)->port);
    } else {
      c->static_servers_.push_back(entry);
    }
  }
  if (!c->dns_targets_.empty() && options.dns_refresh_ms <= 0) {
    return absl::InvalidArgumentError("dns_refresh_ms must be positive");
  }
  {
    MutexLock lock(&c->members_mu_);
    auto m = std::make_shared<Members>();
    for (const std::string& address : c->static_servers_) m->list.push_back(c->ServerOf(address));
    c->members_ = std::move(m);
  }
  if (!c->dns_targets_.empty()) {
    c->RefreshMembers();
    if (c->CurrentMembers()->list.empty()) {
      return absl::UnavailableError(absl::StrCat("no servers: ", options.servers[0], " resolves to no address now"));
    }
    c->refresher_ = std::thread([p = c.get()] { p->RefreshLoop(); });
  }
  return c;
}

TmemClient::Pool* TmemClient::FindPool(PoolRef ref) {
  MutexLock lock(&mu_);
  auto it = pools_.find(ref);
  return it == pools_.end() ? nullptr : it->second.get();  // pools are never removed
}

absl::StatusOr<PoolRef> TmemClient::CreateSharedPool(const std::array<uint8_t, 16>& uuid, uint32_t page_bytes,
                                                     const std::string& tenant) {
  auto pool = std::make_unique<Pool>();
  pool->shared = true;
  pool->uuid = uuid;
  pool->tenant = tenant;
  pool->page_bytes = page_bytes == 0 ? 4096 : page_bytes;
  pool->hash_key = absl::StrCat("s", tenant, "/", std::string(uuid.begin(), uuid.end()));
  Pool* p = pool.get();
  {
    MutexLock lock(&mu_);
    pool->ref = next_ref_++;
    pools_[pool->ref] = std::move(pool);
  }
  // Create it everywhere now; a server that does not answer gets it on first use. A server that
  // rejects the request (bad page size, bad UUID) makes the whole call fail.
  bool any = false;
  for (Server* s : CurrentMembers()->list) {
    absl::StatusOr<uint32_t> id = Prepare(*s, *p);
    if (id.ok()) any = true;
    if (!id.ok() && absl::IsInvalidArgument(id.status())) return id.status();
  }
  (void)any;
  return p->ref;
}

absl::StatusOr<PoolRef> TmemClient::CreatePool(uint32_t page_bytes) {
  auto pool = std::make_unique<Pool>();
  pool->shared = false;
  pool->uuid = {};
  pool->page_bytes = page_bytes == 0 ? 4096 : page_bytes;
  Pool* p = pool.get();
  {
    MutexLock lock(&mu_);
    pool->ref = next_ref_++;
    pool->hash_key = absl::StrCat("p", pool->ref);
    pools_[pool->ref] = std::move(pool);
  }
  for (Server* s : CurrentMembers()->list) {
    absl::StatusOr<uint32_t> id = Prepare(*s, *p);
    if (!id.ok() && absl::IsInvalidArgument(id.status())) return id.status();
  }
  return p->ref;
}

absl::StatusOr<uint32_t> TmemClient::CreateOn(Server& s, const Pool& pool) {
  s.mu.AssertHeld();
  ::grpc::ClientContext ctx;
  SetDeadline(&ctx, options_.call_timeout_ms);
  tmem::v1::CreatePoolResponse resp;
  ::grpc::Status st;
  if (pool.shared) {
    tmem::v1::CreateSharedPoolRequest req;
    req.set_uuid(std::string(pool.uuid.begin(), pool.uuid.end()));
    req.set_page_bytes(pool.page_bytes);
    req.set_tenant(pool.tenant);
    st = s.rpc->CreateSharedPool(&ctx, req, &resp);
  } else {
    tmem::v1::CreatePoolRequest req;
    req.set_page_bytes(pool.page_bytes);
    st = s.rpc->CreatePool(&ctx, req, &resp);
  }
  if (!st.ok()) {
    NoteFailure(channels_, s, st);
    return FromGrpc(st);
  }
  NoteInstance(s, resp.instance_id(), counters_.restarts_seen);
  s.pool_ids[pool.ref] = resp.pool_id();
  return resp.pool_id();
}

int TmemClient::WirePortOf(Server& s) {
  s.mu.AssertHeld();
  if (s.wire_port >= 0) return s.wire_port;
  tmem::v1::ServerInfoRequest req;
  tmem::v1::ServerInfoResponse resp;
  ::grpc::ClientContext ctx;
  SetDeadline(&ctx, options_.call_timeout_ms);
  ::grpc::Status st = tmem::v1::Admin::NewStub(channels_.Make(s.address))->ServerInfo(&ctx, req, &resp);
  switch (st.error_code()) {
    case ::grpc::StatusCode::OK:
      s.wire_port = static_cast<int>(options_.tls.enabled() ? resp.wire_tls_port() : resp.wire_plaintext_port());
      break;
    case ::grpc::StatusCode::UNAVAILABLE:
    case ::grpc::StatusCode::DEADLINE_EXCEEDED:
    case ::grpc::StatusCode::RESOURCE_EXHAUSTED:
    case ::grpc::StatusCode::CANCELLED:
      break;  // not reached now (down, slow, a call limit): asked again at the next stream
    default:
      s.wire_port = 0;  // it answered without a wire port (no Admin service: gRPC only)
  }
  return s.wire_port;
}

std::shared_ptr<PageStream> TmemClient::StreamFor(Server& s, size_t k) {
  MutexLock lock(&s.mu);
  std::shared_ptr<PageStream>& stream = s.streams[k];
  if (stream != nullptr && !stream->broken()) return stream;
  const auto now = std::chrono::steady_clock::now();
  if (stream != nullptr) {
    // A stream broke: wait before the next attempt, longer each time it happens again.
    if (now < s.next_connect) return nullptr;
    s.next_connect = now + std::chrono::milliseconds(s.backoff_ms);
    s.backoff_ms = std::min(s.backoff_ms * 2, options_.reconnect_max_ms);
    NoteFailure(channels_, s, ::grpc::Status(::grpc::StatusCode::UNAVAILABLE, "stream broke"));
    s.wire_port = -1;
  }
  counters_.stream_attempts.fetch_add(1, std::memory_order_relaxed);
  // A unix: or dns: target has no host to reach a wire port on.
  const bool has_host = s.address.find("://") == std::string::npos && s.address.rfind("unix:", 0) != 0;
  const int wire_port = options_.transport == "grpc" || !has_host ? 0 : WirePortOf(s);
  if (wire_port > 0) {
    WireStreamOptions wo;
    const auto colon = s.address.rfind(':');
    wo.host = s.address.substr(0, colon);
    if (wo.host.size() >= 2 && wo.host.front() == '[' && wo.host.back() == ']') {
      wo.host = wo.host.substr(1, wo.host.size() - 2);
    }
    wo.port = wire_port;
    wo.tls = wire_tls_;
    wo.server_name = options_.tls.server_name;
    wo.own_tls_records = options_.tls.own_records;
    wo.connect_timeout_ms = options_.call_timeout_ms;
    stream = std::make_shared<WireStream>(std::move(wo));
    counters_.wire_streams_opened.fetch_add(1, std::memory_order_relaxed);
  } else if (options_.transport == "wire") {
    return nullptr;  // no wire port offered (or not known yet): unreachable for this client
  } else {
    stream = std::make_shared<SessionStream>(s.rpc);
  }
  counters_.streams_opened.fetch_add(1, std::memory_order_relaxed);
  return stream;
}

void TmemClient::NoteReply(Server& s, PoolRef pool, const absl::StatusOr<tmem::v1::SessionResponse>& reply) {
  MutexLock lock(&s.mu);
  if (!reply.ok()) return;  // the stream's own state says what happened
  if (reply->instance_id() != 0) {
    if (s.instance != 0 && reply->instance_id() != s.instance) counters_.restarts_seen.fetch_add(1);
    s.instance = reply->instance_id();
  }
  // The server answers: its other broken streams may reconnect at once.
  s.backoff_ms = options_.reconnect_min_ms;
  s.next_connect = std::chrono::steady_clock::time_point();
  // The server lost the pool (a new device): create it again on the next call.
  if (reply->code() == static_cast<int>(::grpc::StatusCode::NOT_FOUND)) s.pool_ids.erase(pool);
}

absl::Status TmemClient::Put(PoolRef ref, std::string_view object, uint64_t index, std::span<const uint8_t> page) {
  const PagePut one{object, index, page};
  return PutPages(ref, std::span<const PagePut>(&one, 1));
}

absl::StatusOr<bool> TmemClient::Get(PoolRef ref, std::string_view object, uint64_t index, std::span<uint8_t> out) {
  const PageGet one{object, index, out};
  TMEM_ASSIGN_OR_RETURN(std::vector<bool> hits, GetPages(ref, std::span<const PageGet>(&one, 1)));
  return hits[0];
}

absl::Status TmemClient::PutPages(PoolRef ref, std::span<const PagePut> pages) {
  Pool* pool = FindPool(ref);
  if (pool == nullptr) return absl::NotFoundError(absl::StrCat("pool ", ref, " was not created by this client"));
  for (size_t i = 0; i < pages.size(); ++i) {
    if (pages[i].page.size() != pool->page_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("page ", i, " has ", pages[i].page.size(), " bytes; the pool has ",
                                                     pool->page_bytes, "-byte pages"));
    }
    if (pages[i].object.empty()) return absl::InvalidArgumentError(absl::StrCat("page ", i, ": empty object key"));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.call_timeout_ms);
  const std::shared_ptr<const Members> members = CurrentMembers();
  if (members->list.empty()) {
    counters_.puts_dropped.fetch_add(pages.size(), std::memory_order_relaxed);
    return absl::OkStatus();
  }
  std::vector<Part> parts = Split(*members, *pool, pages.size(), [&](size_t i) { return pages[i].object; });
  struct Sent {
    size_t server;
    size_t stream_index;
    const std::vector<size_t>* items;  // the part's: pages [at, end) of it were sent here
    size_t at, end;
    std::shared_ptr<PageStream> stream;
    std::shared_ptr<PageStream::Op> op;
  };
  std::vector<Sent> sent;
  uint64_t dropped = 0;
  // A put that did not arrive leaves the handle's older version on its server: each such handle
  // gets a flush queued there, delivered before anything else reaches that server, so that no
  // get returns the older page (put-put-get).
  const auto forget = [&](size_t server, const std::vector<size_t>& items, size_t at, size_t end) {
    dropped += end - at;
    Server& s = *members->list[server];
    MutexLock lock(&s.mu);
    for (size_t k = at; k < end; ++k) {
      const PagePut& p = pages[items[k]];
      DeferFlush(s, {DeferredFlush::Kind::kPage, ref, std::string(p.object), p.index});
    }
    counters_.flushes_deferred.fetch_add(end - at, std::memory_order_relaxed);
  };
  for (const Part& part : parts) {
    Server& s = *members->list[part.server];
    // An object put here is no longer where it was last put (a membership change): the former
    // server forgets it before it is asked anything else.
    for (size_t k : part.items) NoteOwner(*pool, pages[k].object, &s);
    absl::StatusOr<uint32_t> id = Prepare(s, *pool);
    std::shared_ptr<PageStream> stream = id.ok() ? StreamFor(s, part.stream) : nullptr;
    if (stream == nullptr) {
      forget(part.server, part.items, 0, part.items.size());
      continue;
    }
    std::vector<PageStream::PutView> views;
    for (size_t at = 0; at < part.items.size(); at += options_.max_batch_pages) {
      const size_t end = std::min(part.items.size(), at + options_.max_batch_pages);
      views.clear();
      for (size_t k = at; k < end; ++k) {
        const PagePut& p = pages[part.items[k]];
        views.push_back({p.object, p.index, p.page});
      }
      sent.push_back({part.server, part.stream, &part.items, at, end, stream, stream->SubmitPut(*id, views)});
    }
  }
  if (options_.max_unacked_put_batches <= 0) {
    for (Sent& x : sent) {
      absl::StatusOr<tmem::v1::SessionResponse> reply = x.stream->Wait(*x.op, deadline);
      NoteReply(*members->list[x.server], ref, reply);
      if (!reply.ok() || reply->code() != 0) {
        forget(x.server, *x.items, x.at, x.end);
        TMEM_LOG_RATE_LIMITED(Warning) << "puts to " << members->list[x.server]->address << " dropped: "
                                       << (reply.ok() ? reply->message() : std::string(reply.status().message()));
      }
    }
  } else {
    // Sent: settled later (SettlePuts), with what that needs.
    std::vector<Server*> touched;
    for (Sent& x : sent) {
      UnackedPut u{x.stream, x.stream_index, x.op, ref, {}, deadline};
      u.handles.reserve(x.end - x.at);
      for (size_t k = x.at; k < x.end; ++k) {
        const PagePut& p = pages[(*x.items)[k]];
        u.handles.emplace_back(std::string(p.object), p.index);
      }
      Server* s = members->list[x.server];
      {
        MutexLock lock(&s->unacked_mu);
        s->unacked.push_back(std::move(u));
      }
      if (std::find(touched.begin(), touched.end(), s) == touched.end()) touched.push_back(s);
    }
    // Past the window, this call waits for its own puts' replies (each caller reads its own
    // streams, in parallel); then what is answered is settled, unless another thread is at it.
    const size_t window = static_cast<size_t>(options_.max_unacked_put_batches);
    for (Server* s : touched) {
      bool over;
      {
        MutexLock lock(&s->unacked_mu);
        over = s->unacked.size() > window;
      }
      if (!over) continue;
      for (Sent& x : sent) {
        if (members->list[x.server] == s) x.stream->Await(*x.op, deadline);
      }
    }
    for (Server* s : touched) SettlePuts(*s, nullptr, /*all=*/false);
  }
  if (dropped > 0) counters_.puts_dropped.fetch_add(dropped, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<bool>> TmemClient::GetPages(PoolRef ref, std::span<const PageGet> gets) {
  Pool* pool = FindPool(ref);
  if (pool == nullptr) return absl::NotFoundError(absl::StrCat("pool ", ref, " was not created by this client"));
  for (size_t i = 0; i < gets.size(); ++i) {
    if (gets[i].out.size() != pool->page_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("buffer ", i, " has ", gets[i].out.size(), " bytes; the pool has ",
                                                     pool->page_bytes, "-byte pages"));
    }
    if (gets[i].object.empty()) return absl::InvalidArgumentError(absl::StrCat("get ", i, ": empty object key"));
  }
  std::vector<bool> hits(gets.size(), false);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.call_timeout_ms);
  const std::shared_ptr<const Members> members = CurrentMembers();
  if (members->list.empty()) {
    counters_.gets_unreachable.fetch_add(gets.size(), std::memory_order_relaxed);
    return hits;
  }
  // A server with no put unanswered gets its whole share on the calling thread's own stream:
  // one request instead of one per stream, and no connection shared with other callers. No
  // earlier put of these handles can be overtaken there (every put sent before this call is
  // answered, so tmemd has applied it; a put that failed has its flush queued, delivered by
  // Prepare before the get). Otherwise a handle's get follows its puts on their stream.
  // Decided under settle_mu: a settler takes puts out of `unacked` before it has waited for
  // them and queued the flushes of failed ones, so an empty list means nothing only while no
  // settler is at work. A settler busy elsewhere: the object's stream, as for a put in flight.
  std::vector<char> own_stream(members->list.size(), 0);
  for (size_t k = 0; k < members->list.size(); ++k) {
    Server& s = *members->list[k];
    if (!s.settle_mu.TryLock()) continue;
    SettlePutsLocked(s, nullptr, /*all=*/false, kNoIndex);  // those answered already
    {
      MutexLock lock(&s.unacked_mu);
      own_stream[k] = s.unacked.empty() ? 1 : 0;
    }
    s.settle_mu.Unlock();
  }
  std::vector<Part> parts = Split(
      *members, *pool, gets.size(), [&](size_t i) { return gets[i].object; }, &own_stream);
  struct Sent {
    size_t server;
    std::vector<size_t> items;
    std::shared_ptr<PageStream> stream;
    std::shared_ptr<PageStream::Op> op;
  };
  std::vector<Sent> sent;
  uint64_t unreachable = 0;
  for (const Part& part : parts) {
    Server& s = *members->list[part.server];
    // A put of these handles sent earlier on this stream index but another stream object (one
    // that broke since) is settled before the get goes: had it failed, its flush must reach the
    // server first. On the same stream the server runs them in order anyway, and other stream
    // indexes carry other handles. (On the thread's own stream no put was unanswered.)
    const bool own = own_stream[part.server] != 0;
    const PageStream* current = nullptr;
    if (!own) {
      {
        MutexLock lock(&s.mu);
        if (part.stream < s.streams.size() && s.streams[part.stream] != nullptr && !s.streams[part.stream]->broken()) {
          current = s.streams[part.stream].get();
        }
      }
      SettlePuts(s, current, /*all=*/false, part.stream);
    }
    absl::StatusOr<uint32_t> id = Prepare(s, *pool);
    std::shared_ptr<PageStream> stream = id.ok() ? StreamFor(s, part.stream) : nullptr;
    if (!own && stream != nullptr && stream.get() != current) {
      // The stream changed meanwhile: settle what went on another one, then deliver its flushes.
      SettlePuts(s, stream.get(), /*all=*/false, part.stream);
      id = Prepare(s, *pool);
      if (!id.ok()) stream = nullptr;
    }
    if (stream == nullptr) {
      unreachable += part.items.size();
      continue;
    }
    for (size_t at = 0; at < part.items.size(); at += options_.max_batch_pages) {
      tmem::v1::SessionRequest req;
      tmem::v1::GetPagesRequest* get = req.mutable_get_pages();
      get->set_pool_id(*id);
      const size_t end = std::min(part.items.size(), at + options_.max_batch_pages);
      std::vector<size_t> items(part.items.begin() + at, part.items.begin() + end);
      std::vector<std::span<uint8_t>> outs;
      outs.reserve(items.size());
      for (size_t i : items) {
        tmem::v1::Handle* h = get->add_handles();
        h->set_object(gets[i].object.data(), gets[i].object.size());
        h->set_index(gets[i].index);
        outs.push_back(gets[i].out);
      }
      sent.push_back({part.server, std::move(items), stream, stream->SubmitGet(std::move(req), std::move(outs))});
      counters_.get_requests.fetch_add(1, std::memory_order_relaxed);
    }
  }
  for (Sent& x : sent) {
    absl::StatusOr<tmem::v1::SessionResponse> reply = x.stream->Wait(*x.op, deadline);
    NoteReply(*members->list[x.server], ref, reply);
    if (!reply.ok() || reply->code() != 0) {
      unreachable += x.items.size();
      continue;
    }
    const tmem::v1::GetPagesResponse& r = reply->get_pages();
    if (r.results_size() != static_cast<int>(x.items.size())) continue;  // malformed: all miss
    for (size_t k = 0; k < x.items.size(); ++k) {
      const tmem::v1::PageResult& res = r.results(static_cast<int>(k));
      const PageGet& g = gets[x.items[k]];
      if (!res.hit()) continue;
      if (res.data().empty()) {
        hits[x.items[k]] = true;  // delivered straight into g.out (PageStream::SubmitGet)
        continue;
      }
      if (res.data().size() != g.out.size()) continue;
      std::memcpy(g.out.data(), res.data().data(), g.out.size());
      hits[x.items[k]] = true;
    }
  }
  if (unreachable > 0) counters_.gets_unreachable.fetch_add(unreachable, std::memory_order_relaxed);
  return hits;
}

absl::Status TmemClient::DestroyPool(PoolRef ref) {
  std::unique_ptr<Pool> gone;
  {
    MutexLock lock(&mu_);
    auto it = pools_.find(ref);
    if (it == pools_.end()) return absl::NotFoundError(absl::StrCat("pool ", ref, " was not created by this client"));
    // Pool* handed out earlier must stay valid for calls in flight: keep the object, forget the ref.
    retired_.push_back(std::move(it->second));
    pools_.erase(it);
  }
  absl::Status first;
  for (Server* s : AllServers()) {
    SettlePuts(*s, nullptr, /*all=*/true);  // no put of the pool lands after its destruction
    std::shared_ptr<tmem::v1::PagePoolClient> rpc;
    uint32_t id;
    {
      MutexLock lock(&s->mu);
      auto it = s->pool_ids.find(ref);
      if (it == s->pool_ids.end()) continue;  // never created there
      id = it->second;
      s->pool_ids.erase(it);
      rpc = s->rpc;
    }
    ::grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.call_timeout_ms);
    tmem::v1::DestroyPoolRequest req;
    req.set_pool_id(id);
    tmem::v1::DestroyPoolResponse resp;
    ::grpc::Status st = rpc->DestroyPool(&ctx, req, &resp);
    if (!st.ok() && st.error_code() != ::grpc::StatusCode::NOT_FOUND &&
        st.error_code() != ::grpc::StatusCode::UNAVAILABLE &&
        st.error_code() != ::grpc::StatusCode::DEADLINE_EXCEEDED && first.ok()) {
      first = FromGrpc(st);
    }
  }
  return first;
}

}  // namespace tmem::client
