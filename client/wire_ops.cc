#include "client/wire_ops.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace tmem::client {
namespace w = ::tmem::wire;

// Appends the wire request of `req` (id `id`) to `out`; InvalidArgument (nothing appended) for
// what the wire cannot carry, in the server's words.
absl::Status Encode(const tmem::v1::SessionRequest& req, uint64_t id, std::vector<uint8_t>& out) {
  auto check_object = [](const std::string& o, size_t i) -> absl::Status {
    if (o.empty() || o.size() > w::kMaxObjectBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("entries[", i, "].object: ", o.size(), " bytes; an object key has 1 to ", w::kMaxObjectBytes));
    }
    return absl::OkStatus();
  };
  // What the server would refuse by closing the connection (every caller's operations on it
  // would fail) is refused here for this operation alone, in the server's words.
  auto check_batch = [](size_t n) -> absl::Status {
    if (n == 0) return absl::InvalidArgumentError(absl::StrCat("entries is empty; send 1 to ", w::kMaxBatch));
    if (n > w::kMaxBatch) {
      return absl::InvalidArgumentError(absl::StrCat("entries has ", n, " entries; at most ", w::kMaxBatch));
    }
    return absl::OkStatus();
  };
  auto handles = [&](w::Verb verb, uint32_t pool,
                     const google::protobuf::RepeatedPtrField<tmem::v1::Handle>& hs) -> absl::Status {
    if (absl::Status s = check_batch(static_cast<size_t>(hs.size())); !s.ok()) return s;
    for (int i = 0; i < hs.size(); ++i) {
      if (absl::Status s = check_object(hs[i].object(), static_cast<size_t>(i)); !s.ok()) return s;
    }
    const size_t at = w::BeginRequest(out, verb, id, pool, static_cast<uint16_t>(hs.size()));
    for (const auto& h : hs) w::AppendEntry(out, h.object(), h.index());
    w::FinishRequest(out, at);
    return absl::OkStatus();
  };
  switch (req.op_case()) {
    case tmem::v1::SessionRequest::kPutPages: {
      const auto& p = req.put_pages();
      if (absl::Status s = check_batch(static_cast<size_t>(p.pages_size())); !s.ok()) return s;
      const size_t page = p.pages(0).data().size();
      if (page > w::kMaxPageBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("pages[0].data: ", page, " bytes; pages have at most ", w::kMaxPageBytes));
      }
      for (int i = 0; i < p.pages_size(); ++i) {
        if (absl::Status s = check_object(p.pages(i).handle().object(), static_cast<size_t>(i)); !s.ok()) return s;
        if (p.pages(i).data().size() != page) {
          return absl::InvalidArgumentError(
              absl::StrCat("pages[", i, "].data: ", p.pages(i).data().size(), " bytes; the batch's pages are ", page));
        }
      }
      const size_t at = w::BeginRequest(out, w::Verb::kPut, id, p.pool_id(), static_cast<uint16_t>(p.pages_size()),
                                        static_cast<uint32_t>(page));
      out.reserve(out.size() + p.pages_size() * (sizeof(w::Entry) + page));
      for (const auto& pp : p.pages()) {
        w::AppendEntry(out, pp.handle().object(), pp.handle().index());
        out.insert(out.end(), pp.data().begin(), pp.data().end());
      }
      w::FinishRequest(out, at);
      return absl::OkStatus();
    }
    case tmem::v1::SessionRequest::kGetPages:
      return handles(w::Verb::kGet, req.get_pages().pool_id(), req.get_pages().handles());
    case tmem::v1::SessionRequest::kFlushPages:
      return handles(w::Verb::kFlushPages, req.flush_pages().pool_id(), req.flush_pages().handles());
    case tmem::v1::SessionRequest::kFlushObject: {
      if (absl::Status s = check_object(req.flush_object().object(), 0); !s.ok()) return s;
      const size_t at = w::BeginRequest(out, w::Verb::kFlushObject, id, req.flush_object().pool_id(), 1);
      w::AppendEntry(out, req.flush_object().object(), 0);
      w::FinishRequest(out, at);
      return absl::OkStatus();
    }
    case tmem::v1::SessionRequest::kFlushPool:
      w::FinishRequest(out, w::BeginRequest(out, w::Verb::kFlushPool, id, req.flush_pool().pool_id(), 0));
      return absl::OkStatus();
    case tmem::v1::SessionRequest::OP_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("the operation carries nothing");
}

// The reply `r` as the Session stream's response.
tmem::v1::SessionResponse Decode(const w::Reply& r) {
  tmem::v1::SessionResponse resp;
  resp.set_op_id(r.header.request_id);
  resp.set_code(static_cast<int32_t>(r.header.status));
  resp.set_instance_id(r.header.instance_id);
  if (r.header.status != 0) {
    resp.set_message(std::string(r.body.begin(), r.body.end()));
    return resp;
  }
  if (r.header.verb == static_cast<uint8_t>(w::Verb::kGet)) {
    const size_t count = r.header.count;
    const size_t head = w::GetResultBytes(count);
    if (r.body.size() < head) {
      resp.set_code(static_cast<int32_t>(absl::StatusCode::kInternal));
      resp.set_message("a GET reply shorter than its results");
      return resp;
    }
    size_t hits = 0;
    for (size_t i = 0; i < count; ++i) hits += r.body[i] != 0;
    const size_t page = hits == 0 ? 0 : (r.body.size() - head) / hits;
    if (hits > 0 && page * hits != r.body.size() - head) {
      resp.set_code(static_cast<int32_t>(absl::StatusCode::kInternal));
      resp.set_message("a GET reply whose pages do not add up");
      return resp;
    }
    tmem::v1::GetPagesResponse* g = resp.mutable_get_pages();
    g->set_instance_id(r.header.instance_id);
    size_t at = head;
    for (size_t i = 0; i < count; ++i) {
      tmem::v1::PageResult* res = g->add_results();
      if (r.body[i] == 0) continue;
      res->set_hit(true);
      res->set_data(reinterpret_cast<const char*>(r.body.data() + at), page);
      at += page;
    }
  }
  return resp;
}

// A GET reply's hits written straight into the op's buffers: the results say hit, with no data.
void DeliverGet(const w::Reply& r, PageStream::Op& op) {
  const auto& outs = op.outputs();
  const size_t count = r.header.count;
  const size_t head = w::GetResultBytes(count);
  size_t hits = 0;
  for (size_t i = 0; i < count && i < r.body.size(); ++i) hits += r.body[i] != 0;
  const size_t page = count == 0 || outs.empty() ? 0 : outs[0].size();
  tmem::v1::SessionResponse resp;
  resp.set_op_id(r.header.request_id);
  resp.set_instance_id(r.header.instance_id);
  if (r.body.size() < head || r.body.size() - head != hits * page) {
    resp.set_code(static_cast<int32_t>(absl::StatusCode::kInternal));
    resp.set_message("a GET reply whose pages do not match the request's buffers");
    op.Complete(absl::OkStatus(), &resp);
    return;
  }
  tmem::v1::GetPagesResponse* g = resp.mutable_get_pages();
  g->set_instance_id(r.header.instance_id);
  for (size_t i = 0; i < count; ++i) g->add_results()->set_hit(r.body[i] != 0);
  op.Deliver(
      [&] {
        size_t at = head;
        for (size_t i = 0; i < count; ++i) {
          if (r.body[i] == 0) continue;
          std::memcpy(outs[i].data(), r.body.data() + at, page);
          at += page;
        }
      },
      &resp);
}

// Completes `op` with the answer the server would give to what Encode refused.
void CompleteRefused(PageStream::Op& op, uint64_t id, const absl::Status& s) {
  tmem::v1::SessionResponse resp;
  resp.set_op_id(id);
  resp.set_code(static_cast<int32_t>(s.code()));
  resp.set_message(std::string(s.message()));
  op.Complete(absl::OkStatus(), &resp);
}

}  // namespace tmem::client
