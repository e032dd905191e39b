// PageStream: one ordered pipe of page operations to one server, shared by many callers — a
// tmem.v1 Session stream on gRPC (session_stream.h) or a page wire protocol connection
// (wire_stream.h). Both speak tmem.v1.SessionRequest/SessionResponse to the client, so the
// client's rules (sharding, flush replay, restarts, backoff) are written once.
//
// Callers Submit operations and later Wait for their replies; many are in flight at once, and
// the server runs them in order. When the stream breaks every operation in flight and every later
// one fails with UNAVAILABLE; the owner replaces a broken stream. A Wait that times out fails with
// DEADLINE_EXCEEDED, and the stream is broken when nothing at all came back for that long.
//
// Thread-safety: every method is thread-safe.
#ifndef TMEM_CLIENT_PAGE_STREAM_H_
#define TMEM_CLIENT_PAGE_STREAM_H_

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "proto/tmem.pb.h"

namespace tmem::client {

class PageStream {
 public:
  // One submitted operation; Wait on it.
  class Op {
   public:
    Op() = default;
    Op(const Op&) = delete;
    Op& operator=(const Op&) = delete;

    // Ends the op (once; later calls are ignored).
    void Complete(absl::Status status, tmem::v1::SessionResponse* response) {
      MutexLock lock(&mu);
      if (done) return;
      this->status = std::move(status);
      if (response != nullptr) this->response = std::move(*response);
      done = true;
      cv.SignalAll();
    }
    // A get's destination buffers (one per handle, in order), given to SubmitGet: a stream that
    // can write hits straight into them does so (their results then carry hit with empty data).
    // Never written once Abandon() returned true.
    void set_outputs(std::vector<std::span<uint8_t>> outs) { outputs_ = std::move(outs); }
    const std::vector<std::span<uint8_t>>& outputs() const { return outputs_; }
    // Runs `deliver` (which writes into outputs()) and completes the op with `response`, unless the
    // waiter gave up first. Returns whether it ran.
    template <typename Fn>
    bool Deliver(Fn deliver, tmem::v1::SessionResponse* response) {
      MutexLock lock(&mu);
      if (done || abandoned_) return false;
      deliver();
      status = absl::OkStatus();
      this->response = std::move(*response);
      done = true;
      cv.SignalAll();
      return true;
    }
    // The waiter gives up: false if the op completed meanwhile (its result may be taken).
    bool Abandon() {
      MutexLock lock(&mu);
      if (done) return false;
      abandoned_ = true;
      return true;
    }
    // Waits until `deadline`; true once done.
    bool WaitUntil(std::chrono::steady_clock::time_point deadline) {
      MutexLock lock(&mu);
      return WaitLocked(deadline, /*on_wake=*/false, 0);
    }
    // Wake() calls so far: pass it to WaitUntilWoken to count a wake that comes before the wait.
    uint64_t wakes() {
      MutexLock lock(&mu);
      return wakes_;
    }
    // Like WaitUntil, but also returns (false) once Wake() was called more than `wakes_then`
    // times (by default: at the first Wake() after the call).
    bool WaitUntilWoken(std::chrono::steady_clock::time_point deadline, std::optional<uint64_t> since = std::nullopt) {
      MutexLock lock(&mu);
      return WaitLocked(deadline, /*on_wake=*/true, since.value_or(wakes_));
    }
    // Wakes the op's waiter without completing the op (the stream has news for it).
    void Wake() {
      MutexLock lock(&mu);
      ++wakes_;
      cv.SignalAll();
    }
    bool finished() {
      MutexLock lock(&mu);
      return done;
    }
    absl::StatusOr<tmem::v1::SessionResponse> Take() {
      MutexLock lock(&mu);
      if (!status.ok()) return status;
      return std::move(response);
    }

   private:
    // Until done, `deadline`, or (on_wake) more than `wakes_then` wakes; true once done.
    bool WaitLocked(std::chrono::steady_clock::time_point deadline, bool on_wake, uint64_t wakes_then)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      while (!done && !(on_wake && wakes_ != wakes_then)) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) break;
        cv.WaitFor(&mu, deadline - now);
      }
      return done;
    }
    Mutex mu;
    CondVar cv;
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
    tmem::v1::SessionResponse response ABSL_GUARDED_BY(mu);
    bool abandoned_ ABSL_GUARDED_BY(mu) = false;
    uint64_t wakes_ ABSL_GUARDED_BY(mu) = 0;
    std::vector<std::span<uint8_t>> outputs_;  // set before Submit, then const
  };

  virtual ~PageStream() = default;

  // Queues `request` (its op_id is assigned here) for sending.
  virtual std::shared_ptr<Op> Submit(tmem::v1::SessionRequest request) = 0;
  // One page of a put, viewed where the caller holds it.
  struct PutView {
    std::string_view object;
    uint64_t index = 0;
    std::span<const uint8_t> page;
  };
  // A put_pages request for `pool_id`, made from the caller's pages: a stream that can send them
  // from where they are does (no copy of its own); the pages need to stay valid only until this
  // returns. The default builds the Session request.
  virtual std::shared_ptr<Op> SubmitPut(uint32_t pool_id, std::span<const PutView> pages) {
    tmem::v1::SessionRequest req;
    tmem::v1::PutPagesRequest* put = req.mutable_put_pages();
    put->set_pool_id(pool_id);
    for (const PutView& p : pages) {
      tmem::v1::PagePut* w = put->add_pages();
      w->mutable_handle()->set_object(p.object.data(), p.object.size());
      w->mutable_handle()->set_index(p.index);
      w->set_data(p.page.data(), p.page.size());
    }
    return Submit(std::move(req));
  }
  // A get_pages request whose hits may be written straight into `outputs` (one buffer of the
  // page size per handle): a hit delivered so has empty data in its result. The buffers must
  // stay valid until Wait returns.
  virtual std::shared_ptr<Op> SubmitGet(tmem::v1::SessionRequest request, std::vector<std::span<uint8_t>> outputs) {
    (void)outputs;
    return Submit(std::move(request));
  }
  // Waits until `deadline` for the reply of `op`. A reply's own code is not interpreted here.
  // Errors: UNAVAILABLE (stream broken), DEADLINE_EXCEEDED (no reply in time).
  virtual absl::StatusOr<tmem::v1::SessionResponse> Wait(Op& op, std::chrono::steady_clock::time_point deadline) = 0;
  // Waits until `op` is answered (or the stream broke, or `deadline`) without taking its result,
  // which a later Wait still returns. True once answered.
  virtual bool Await(Op& op, std::chrono::steady_clock::time_point deadline) { return op.WaitUntil(deadline); }
  // Breaks the stream (as a failure would).
  virtual void Cancel() = 0;
  // True once the stream failed or was cancelled: the owner should open a new one.
  virtual bool broken() const = 0;
  // Replies received over the stream's life (tests, diagnostics).
  virtual uint64_t replies() const = 0;
};

}  // namespace tmem::client

#endif  // TMEM_CLIENT_PAGE_STREAM_H_
