#include "server/wire/request_loop.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/status_macros.h"
#include "server/pool/request_checks.h"

namespace tmem::wire {
namespace {

constexpr uint32_t kOk = 0;

const char* VerbName(uint8_t verb) {
  switch (static_cast<Verb>(verb)) {
    case Verb::kHello:
      return "HELLO";
    case Verb::kPut:
      return "PUT";
    case Verb::kGet:
      return "GET";
    case Verb::kFlushPages:
      return "FLUSH_PAGES";
    case Verb::kFlushObject:
      return "FLUSH_OBJECT";
    case Verb::kFlushPool:
      return "FLUSH_POOL";
  }
  return "?";
}

// The body a well-formed request of verb `h.verb` and `h.count` entries has; nullopt for an
// unknown verb.
std::optional<uint64_t> ExpectedBody(const RequestHeader& h) {
  switch (static_cast<Verb>(h.verb)) {
    case Verb::kHello:
      return sizeof(Hello);
    case Verb::kPut:
      return uint64_t{h.count} * (sizeof(Entry) + uint64_t{h.page_bytes});
    case Verb::kGet:
    case Verb::kFlushPages:
    case Verb::kFlushObject:
      return uint64_t{h.count} * sizeof(Entry);
    case Verb::kFlushPool:
      return 0;
  }
  return std::nullopt;
}

std::string_view ObjectOf(const Entry& e) { return {reinterpret_cast<const char*>(e.object), e.object_bytes}; }

}  // namespace

bool TenantConnections::Acquire(const std::string& tenant) {
  MutexLock lock(&mu_);
  int& n = open_[tenant];
  if (n >= max_) return false;
  ++n;
  return true;
}

void TenantConnections::Release(const std::string& tenant) {
  MutexLock lock(&mu_);
  auto it = open_.find(tenant);
  if (it != open_.end() && --it->second == 0) open_.erase(it);
}

RequestLoop::RequestLoop(pool::PoolEngine* engine, std::optional<trust::Identity> peer, trust::Audit* audit,
                         WireCounters* counters, const LoopLimits& limits, TenantConnections* tenants,
                         std::vector<uint8_t>* scratch, DeviceReads* reads, void* context)
    : engine_(engine),
      peer_(std::move(peer)),
      audit_(audit),
      counters_(counters),
      limits_(limits),
      tenants_(tenants),
      scratch_(scratch != nullptr ? *scratch : own_scratch_),
      reads_(reads),
      context_(context) {}

RequestLoop::~RequestLoop() {
  if (tenant_slot_) tenants_->Release(peer_->tenant);
  if (pending_gets_ > 0) {
    reads_->Orphan(this);
    counters_->gets_waiting.fetch_sub(static_cast<int64_t>(pending_gets_), std::memory_order_relaxed);
  }
}

std::span<uint8_t> RequestLoop::InputSpace(size_t min_bytes) {
  // Taken bytes are dropped once they are most of what was received (a copy of the unread tail).
  if (in_pos_ > 0 && (in_pos_ == in_end_ || in_pos_ >= in_end_ / 2)) {
    std::memmove(in_.data(), in_.data() + in_pos_, in_end_ - in_pos_);
    in_end_ -= in_pos_;
    in_pos_ = 0;
  }
  // Room for what the request at in_pos_ still needs (its header checked: at most one request's
  // worth past the bound), else for `min_bytes`.
  const size_t want = std::max(min_bytes, need_ > in_end_ - in_pos_ ? need_ - (in_end_ - in_pos_) : 0);
  if (in_.size() - in_end_ < want) in_.resize(in_end_ + want);
  return {in_.data() + in_end_, in_.size() - in_end_};
}

void RequestLoop::Received(size_t n) {
  counters_->bytes_in.fetch_add(n, std::memory_order_relaxed);
  // The body of a refused request is dropped as it arrives, never buffered.
  const size_t dropped = static_cast<size_t>(std::min<uint64_t>(skip_, n));
  if (dropped > 0) {
    std::memmove(in_.data() + in_end_, in_.data() + in_end_ + dropped, n - dropped);
    skip_ -= dropped;
    n -= dropped;
  }
  in_end_ += n;
}

void RequestLoop::Sent(size_t n) {
  out_pos_ += n;
  counters_->bytes_out.fetch_add(n, std::memory_order_relaxed);
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
    // A burst's buffer is not kept by a connection that went quiet.
    if (out_.capacity() > 2 * limits_.max_pending_reply_bytes) std::vector<uint8_t>().swap(out_);
  } else if (out_pos_ > (1u << 20) && out_pos_ >= out_.size() / 2) {
    out_.erase(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(out_pos_));
    out_pos_ = 0;
  }
}

bool RequestLoop::Run() {
  while (!closing_ && wants_input() && skip_ == 0) {
    const size_t avail = in_end_ - in_pos_;
    if (avail < sizeof(RequestHeader)) break;
    RequestHeader h;
    std::memcpy(&h, in_.data() + in_pos_, sizeof(h));
    if (need_ == 0) {
      // The header is in: judge it before waiting for (and buffering) its body.
      bool close = false;
      absl::Status s = CheckHeader(h, &close);
      if (!s.ok()) {
        counters_->requests[h.magic == kRequestMagic && h.verb <= kMaxVerb ? h.verb : 0].fetch_add(
            1, std::memory_order_relaxed);
        ReplyStatus(h.magic == kRequestMagic ? h.verb : 0, h.magic == kRequestMagic ? h.request_id : 0, s, close);
        if (close) break;
        // Skip the body: what is here now, and the rest as it arrives.
        in_pos_ += sizeof(RequestHeader);
        const uint64_t here = std::min<uint64_t>(h.body_bytes, in_end_ - in_pos_);
        in_pos_ += here;
        skip_ = h.body_bytes - here;
        continue;
      }
      need_ = sizeof(RequestHeader) + h.body_bytes;
    }
    if (avail < need_) break;  // the rest is on its way
    const uint8_t* body = in_.data() + in_pos_ + sizeof(RequestHeader);
    in_pos_ += need_;
    need_ = 0;
    Handle(h, body);
  }
  return !closing_;
}

absl::Status RequestLoop::CheckHeader(const RequestHeader& h, bool* close) const {
  *close = true;
  if (h.magic != kRequestMagic) {
    return absl::InvalidArgumentError(absl::StrCat("bad magic 0x", absl::Hex(h.magic), " (want 0x",
                                                   absl::Hex(kRequestMagic), "): not a tmem wire request"));
  }
  if (h.body_bytes > kMaxBodyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("body of ", h.body_bytes, " bytes; at most ", kMaxBodyBytes));
  }
  if (!hello_done_) {
    // Before HELLO nothing but HELLO's 16 bytes is read: an unauthenticated peer holds no buffer.
    if (h.verb != static_cast<uint8_t>(Verb::kHello)) {
      return absl::FailedPreconditionError("the first request must be HELLO");
    }
    if (h.body_bytes != sizeof(Hello) || h.count != 0 || h.pool_id != 0 || h.page_bytes != 0) {
      return absl::InvalidArgumentError(absl::StrCat("HELLO: body_bytes ", h.body_bytes, " (want ", sizeof(Hello),
                                                     "), count, pool_id and page_bytes 0"));
    }
    return absl::OkStatus();
  }
  *close = false;
  if (h.verb == static_cast<uint8_t>(Verb::kHello)) {
    return absl::FailedPreconditionError("HELLO was already sent on this connection");
  }
  const std::optional<uint64_t> expected = ExpectedBody(h);
  if (!expected.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown verb ", h.verb, " (version 1 has 1 to ", kMaxVerb, ")"));
  }
  if (h.flags != 0 || h.reserved != 0) return absl::InvalidArgumentError("flags and reserved must be 0");
  if (h.verb != static_cast<uint8_t>(Verb::kPut) && h.page_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("page_bytes is ", h.page_bytes, "; 0 for ", VerbName(h.verb)));
  }
  if (*expected != h.body_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "body_bytes is ", h.body_bytes, "; ", VerbName(h.verb), " with count ", h.count,
        h.verb == static_cast<uint8_t>(Verb::kPut) ? absl::StrCat(" and page_bytes ", h.page_bytes) : std::string(),
        " has ", *expected));
  }
  return absl::OkStatus();
}

void RequestLoop::Handle(const RequestHeader& h, const uint8_t* body) {
  const uint8_t verb = h.verb <= kMaxVerb ? h.verb : 0;
  counters_->requests[verb].fetch_add(1, std::memory_order_relaxed);
  started_ns_ = Clock::Real()->NowNanos();
  handed_off_ = false;
  if (h.verb == static_cast<uint8_t>(Verb::kHello)) {
    HandleHello(h, body);
    counters_->durations[verb].RecordNanos(Clock::Real()->NowNanos() - started_ns_);
    return;
  }
  // CheckHeader passed: HELLO was done, the verb is known and the body is what it implies.
  absl::Status s;
  bool answered = false;
  switch (static_cast<Verb>(h.verb)) {
    case Verb::kPut:
      s = DoPut(h, body);
      break;
    case Verb::kGet:
      s = DoGet(h, body, &answered);
      break;
    case Verb::kFlushPages:
      s = DoFlushPages(h, body);
      break;
    case Verb::kFlushObject:
      s = DoFlushObject(h, body);
      break;
    case Verb::kFlushPool:
      s = DoFlushPool(h);
      break;
    case Verb::kHello:
      break;
  }
  if (!answered) ReplyStatus(h.verb, h.request_id, s);  // else DoGet wrote its reply, or Complete will
  if (!handed_off_) counters_->durations[verb].RecordNanos(Clock::Real()->NowNanos() - started_ns_);
}

void RequestLoop::HandleHello(const RequestHeader& h, const uint8_t* body) {
  Hello hello;
  std::memcpy(&hello, body, sizeof(hello));
  if (hello.min_version > kVersion || hello.max_version < kVersion || hello.min_version > hello.max_version) {
    ReplyStatus(h.verb, h.request_id,
                absl::FailedPreconditionError(absl::StrCat("the client speaks versions ", hello.min_version, " to ",
                                                           hello.max_version, "; this server speaks ", kVersion)),
                /*closing=*/true);
    return;
  }
  // Who the connection proved itself to be decides here, once.
  if (!peer_.has_value() || peer_->tenant.empty()) {
    const std::string why = "the client's certificate names no configured tenant";
    if (audit_ != nullptr) audit_->Refused("wire", trust::Audit::Refusal::kUnknownTenant, why);
    counters_->connections_refused.fetch_add(1, std::memory_order_relaxed);
    ReplyStatus(h.verb, h.request_id, absl::UnauthenticatedError(why), /*closing=*/true);
    return;
  }
  if (!peer_->pages && !peer_->admin) {
    const std::string why = absl::StrCat("tenant '", peer_->tenant, "' has neither the pages nor the admin role");
    if (audit_ != nullptr) audit_->Refused("wire", trust::Audit::Refusal::kPermission, why);
    counters_->connections_refused.fetch_add(1, std::memory_order_relaxed);
    ReplyStatus(h.verb, h.request_id, absl::PermissionDeniedError(why), /*closing=*/true);
    return;
  }
  if (tenants_ != nullptr && !tenants_->Acquire(peer_->tenant)) {
    counters_->connections_refused.fetch_add(1, std::memory_order_relaxed);
    ReplyStatus(h.verb, h.request_id,
                absl::ResourceExhaustedError(absl::StrCat("tenant '", peer_->tenant, "' has ", tenants_->max(),
                                                          " wire connections open (wire.max_connections_per_tenant)")),
                /*closing=*/true);
    return;
  }
  tenant_slot_ = tenants_ != nullptr;
  hello_done_ = true;
  const size_t at = AppendHeader(h.verb, h.request_id, kOk, 0, 0);
  HelloReply r{};
  r.version = kVersion;
  r.max_batch = kMaxBatch;
  r.max_in_flight = limits_.max_in_flight;
  r.max_page_bytes = kMaxPageBytes;
  r.max_body_bytes = kMaxBodyBytes;
  r.tenant_bytes = static_cast<uint32_t>(peer_->tenant.size());
  const auto* rp = reinterpret_cast<const uint8_t*>(&r);
  out_.insert(out_.end(), rp, rp + sizeof(r));
  out_.insert(out_.end(), peer_->tenant.begin(), peer_->tenant.end());
  FinishReply(at);
}

absl::StatusOr<pool::PoolInfo> RequestLoop::Reach(uint32_t pool_id) {
  return pool::ReachPool(*engine_, pool_id, peer_->tenant, peer_->admin);
}

absl::Status RequestLoop::CheckEntries(const uint8_t* body, size_t count, size_t stride, bool index_zero) {
  TMEM_RETURN_IF_ERROR(pool::CheckBatchSize("entries", count));
  for (size_t i = 0; i < count; ++i) {
    Entry e;
    std::memcpy(&e, body + i * stride, sizeof(e));
    TMEM_RETURN_IF_ERROR(pool::CheckObjectKeySize(absl::StrCat("entries[", i, "].object"), e.object_bytes));
    for (uint8_t b : e.reserved) {
      if (b != 0) return absl::InvalidArgumentError(absl::StrCat("entries[", i, "]: reserved bytes must be 0"));
    }
    if (index_zero && e.index != 0) {
      return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].index: ", e.index, "; 0 for FLUSH_OBJECT"));
    }
  }
  return absl::OkStatus();
}

absl::Status RequestLoop::DoPut(const RequestHeader& h, const uint8_t* body) {
  const size_t stride = sizeof(Entry) + h.page_bytes;
  TMEM_RETURN_IF_ERROR(CheckEntries(body, h.count, stride, false));
  absl::StatusOr<pool::PoolInfo> info = Reach(h.pool_id);
  if (!info.ok()) return info.status();
  TMEM_RETURN_IF_ERROR(pool::CheckPageSize("page_bytes", h.page_bytes, *info));
  // The pages stay where the socket's bytes landed: the engine copies each once, into the log.
  puts_.clear();
  for (size_t i = 0; i < h.count; ++i) {
    const uint64_t index = Load<uint64_t>(body + i * stride + offsetof(Entry, index));  // may be unaligned
    puts_.push_back({std::string_view(reinterpret_cast<const char*>(body + i * stride + offsetof(Entry, object)),
                                      body[i * stride + offsetof(Entry, object_bytes)]),
                     index, std::span<const uint8_t>(body + i * stride + sizeof(Entry), h.page_bytes)});
  }
  TMEM_RETURN_IF_ERROR(engine_->PutMany(h.pool_id, puts_));
  counters_->pages_put.fetch_add(h.count, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status RequestLoop::DoGet(const RequestHeader& h, const uint8_t* body, bool* answered) {
  TMEM_RETURN_IF_ERROR(CheckEntries(body, h.count, sizeof(Entry), false));
  absl::StatusOr<pool::PoolInfo> info = Reach(h.pool_id);
  if (!info.ok()) return info.status();
  const size_t page = info->page_bytes;
  gets_.clear();
  for (size_t i = 0; i < h.count; ++i) {
    const uint8_t* e = body + i * sizeof(Entry);
    gets_.push_back(
        {std::string_view(reinterpret_cast<const char*>(e + offsetof(Entry, object)), e[offsetof(Entry, object_bytes)]),
         Load<uint64_t>(e),
         {}});
  }
  if (reads_ != nullptr) {
    // The pages go into the get's own buffer, which lives until its reply is built: with device
    // reads to wait for, the get waits in DeviceReads and the loop goes on.
    std::unique_ptr<PendingGet> p = reads_->Take();
    if (p->pages.size() < h.count * page) p->pages.resize(h.count * page);
    uint8_t* pages = p->pages.data();
    auto buffer_for = [pages, page](size_t i) { return std::span<uint8_t>(pages + i * page, page); };
    if (absl::Status st = engine_->StartGets(h.pool_id, gets_, buffer_for, &p->batch); !st.ok()) {
      reads_->Give(std::move(p));
      return st;
    }
    p->verb = h.verb;
    p->request_id = h.request_id;
    p->count = h.count;
    p->page_bytes = static_cast<uint32_t>(page);
    *answered = true;  // here, or by Complete
    if (p->batch.device_reads().empty()) {
      engine_->FinishGets(&p->batch);
      AppendGetReply(h.verb, h.request_id, p->batch.outcomes(), pages, page);
      reads_->Give(std::move(p));
      return absl::OkStatus();
    }
    ++pending_gets_;
    pending_bytes_ += h.count * page;
    counters_->gets_waiting.fetch_add(1, std::memory_order_relaxed);
    counters_->gets_waited.fetch_add(1, std::memory_order_relaxed);
    p->started_ns = started_ns_;
    p->submitted_ns = Clock::Real()->NowNanos();
    handed_off_ = true;
    reads_->Submit(this, std::move(p));
    return absl::OkStatus();
  }
  // Pages are read into scratch only for handles the index has: misses cost no page of memory.
  if (scratch_.size() < h.count * page) scratch_.resize(h.count * page);
  auto buffer_for = [&](size_t i) { return std::span<uint8_t>(scratch_.data() + i * page, page); };
  absl::StatusOr<std::vector<pool::GetOutcome>> got = engine_->GetMany(h.pool_id, gets_, buffer_for);
  if (!got.ok()) return got.status();
  *answered = true;
  AppendGetReply(h.verb, h.request_id, *got, scratch_.data(), page);
  return absl::OkStatus();
}

void RequestLoop::Complete(std::unique_ptr<PendingGet> get) {
  --pending_gets_;
  pending_bytes_ -= size_t{get->count} * get->page_bytes;
  counters_->gets_waiting.fetch_sub(1, std::memory_order_relaxed);
  counters_->device_waits.RecordNanos(Clock::Real()->NowNanos() - get->submitted_ns);
  engine_->FinishGets(&get->batch);
  // After a closing reply nothing more is sent.
  if (!closing_) AppendGetReply(get->verb, get->request_id, get->batch.outcomes(), get->pages.data(), get->page_bytes);
  counters_->durations[get->verb <= kMaxVerb ? get->verb : 0].RecordNanos(Clock::Real()->NowNanos() - get->started_ns);
  reads_->Give(std::move(get));
}

void RequestLoop::AppendGetReply(uint8_t verb, uint64_t request_id, const std::vector<pool::GetOutcome>& outcomes,
                                 const uint8_t* pages, size_t page) {
  const auto count = static_cast<uint16_t>(outcomes.size());
  const size_t at = AppendHeader(verb, request_id, kOk, count, 0);
  const size_t results = out_.size();
  out_.resize(results + GetResultBytes(count), 0);
  size_t hits = 0;
  for (size_t i = 0; i < count; ++i) {
    if (outcomes[i] != pool::GetOutcome::kHit) continue;
    out_[results + i] = 1;
    ++hits;
  }
  out_.reserve(out_.size() + hits * page);
  for (size_t i = 0; i < count; ++i) {
    if (outcomes[i] == pool::GetOutcome::kHit) out_.insert(out_.end(), pages + i * page, pages + (i + 1) * page);
  }
  FinishReply(at);
  counters_->pages_got.fetch_add(hits, std::memory_order_relaxed);
}

absl::Status RequestLoop::DoFlushPages(const RequestHeader& h, const uint8_t* body) {
  TMEM_RETURN_IF_ERROR(CheckEntries(body, h.count, sizeof(Entry), false));
  absl::StatusOr<pool::PoolInfo> info = Reach(h.pool_id);
  if (!info.ok()) return info.status();
  for (size_t i = 0; i < h.count; ++i) {
    Entry e;
    std::memcpy(&e, body + i * sizeof(Entry), sizeof(e));
    TMEM_RETURN_IF_ERROR(engine_->FlushPage(h.pool_id, ObjectOf(e), e.index));
  }
  return absl::OkStatus();
}

absl::Status RequestLoop::DoFlushObject(const RequestHeader& h, const uint8_t* body) {
  TMEM_RETURN_IF_ERROR(CheckEntries(body, h.count, sizeof(Entry), true));
  absl::StatusOr<pool::PoolInfo> info = Reach(h.pool_id);
  if (!info.ok()) return info.status();
  for (size_t i = 0; i < h.count; ++i) {
    Entry e;
    std::memcpy(&e, body + i * sizeof(Entry), sizeof(e));
    TMEM_RETURN_IF_ERROR(engine_->FlushObject(h.pool_id, ObjectOf(e)));
  }
  return absl::OkStatus();
}

absl::Status RequestLoop::DoFlushPool(const RequestHeader& h) {
  if (h.count != 0) return absl::InvalidArgumentError(absl::StrCat("count is ", h.count, "; 0 for FLUSH_POOL"));
  absl::StatusOr<pool::PoolInfo> info = Reach(h.pool_id);
  if (!info.ok()) return info.status();
  return engine_->FlushPool(h.pool_id);
}

size_t RequestLoop::AppendHeader(uint8_t verb, uint64_t request_id, uint32_t status, uint16_t count, uint8_t flags) {
  const size_t at = out_.size();
  ReplyHeader r{};
  r.magic = kReplyMagic;
  r.verb = verb;
  r.flags = flags;
  r.count = count;
  r.status = status;
  r.request_id = request_id;
  r.instance_id = engine_->instance_id();
  const auto* p = reinterpret_cast<const uint8_t*>(&r);
  out_.insert(out_.end(), p, p + sizeof(r));
  return at;
}

void RequestLoop::FinishReply(size_t at) {
  const auto body = static_cast<uint32_t>(out_.size() - at - sizeof(ReplyHeader));
  std::memcpy(out_.data() + at + offsetof(ReplyHeader, body_bytes), &body, sizeof(body));
}

void RequestLoop::ReplyStatus(uint8_t verb, uint64_t request_id, const absl::Status& s, bool closing) {
  if (!s.ok()) counters_->errors.fetch_add(1, std::memory_order_relaxed);
  const size_t at = AppendHeader(verb, request_id, static_cast<uint32_t>(s.code()), 0, closing ? kReplyClosing : 0);
  const absl::string_view msg = s.message().substr(0, kMaxMessageBytes);
  out_.insert(out_.end(), msg.begin(), msg.end());
  FinishReply(at);
  if (closing) closing_ = true;
}

}  // namespace tmem::wire
