#include "server/io/file_device.h"

#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/status_macros.h"

namespace tmem::io {

absl::StatusOr<IoEngine> ParseIoEngine(const std::string& name) {
  if (name == "pread") return IoEngine::kPread;
  if (name == "uring" || name == "io_uring") return IoEngine::kUring;
  return absl::InvalidArgumentError(absl::StrCat("unknown I/O engine '", name, "' (want pread or uring)"));
}

const char* IoEngineName(IoEngine engine) { return engine == IoEngine::kUring ? "uring" : "pread"; }

// A pool of small io_uring instances: each synchronous call borrows one, so that concurrent
// callers never share a submission queue and never wait on each other's completions.
class FileDevice::RingPool {
 public:
  explicit RingPool(unsigned depth) : depth_(depth) {}

  ~RingPool() {
    MutexLock lock(&mu_);
    for (io_uring* r : free_) {
      io_uring_queue_exit(r);
      delete r;
    }
  }

  absl::StatusOr<io_uring*> Acquire() {
    {
      MutexLock lock(&mu_);
      if (!free_.empty()) {
        io_uring* r = free_.back();
        free_.pop_back();
        return r;
      }
    }
    auto* r = new io_uring;
    int rc = io_uring_queue_init(depth_, r, 0);
    if (rc < 0) {
      delete r;
      return ErrnoStatus(-rc, "io_uring_queue_init");
    }
    return r;
  }

  void Release(io_uring* r) {
    MutexLock lock(&mu_);
    free_.push_back(r);
  }

  // For a ring left in an unknown state: the kernel cancels and reaps what is still in flight.
  static void Discard(io_uring* r) {
    io_uring_queue_exit(r);
    delete r;
  }

 private:
  const unsigned depth_;
  Mutex mu_;
  std::vector<io_uring*> free_ ABSL_GUARDED_BY(mu_);
};

FileDevice::FileDevice(int fd, uint64_t size, const FileDeviceOptions& options)
    : fd_(fd),
      size_(size),
      alignment_(options.alignment),
      engine_(options.engine),
      path_(options.path),
      rings_(options.engine == IoEngine::kUring ? std::make_unique<RingPool>(4) : nullptr),
      batch_rings_(std::make_unique<RingPool>(kBatchDepth)) {}

FileDevice::~FileDevice() {
  rings_.reset();
  batch_rings_.reset();
  ::close(fd_);
}

absl::StatusOr<std::unique_ptr<FileDevice>> FileDevice::Open(const FileDeviceOptions& options) {
  if (options.alignment == 0 || (options.alignment & (options.alignment - 1)) != 0 || options.alignment < 512) {
    return absl::InvalidArgumentError(absl::StrCat("alignment must be a power of two >= 512, got ", options.alignment));
  }
  if (options.path.empty()) return absl::InvalidArgumentError("device path is empty");
  int flags = O_RDWR | O_CLOEXEC;
  if (options.create_size_bytes > 0) flags |= O_CREAT;
  int fd = ::open(options.path.c_str(), flags | O_DIRECT, 0644);
  if (fd < 0 && errno == EINVAL) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot open ", options.path,
                     " with O_DIRECT: the filesystem does not support direct I/O "
                     "(tmpfs does not); put the device file on ext4, xfs or btrfs, or use a block device"));
  }
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", options.path));

  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, absl::StrCat("stat ", options.path));
  }
  uint64_t size = 0;
  if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd, BLKGETSIZE64, &size) != 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, absl::StrCat("BLKGETSIZE64 ", options.path));
    }
  } else if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
    if (size == 0 && options.create_size_bytes > 0) {
      size = AlignDown(options.create_size_bytes, options.alignment);
      int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
      if (rc == EOPNOTSUPP || rc == EINVAL) rc = ::ftruncate(fd, static_cast<off_t>(size)) == 0 ? 0 : errno;
      if (rc != 0) {
        ::close(fd);
        return ErrnoStatus(rc, absl::StrCat("allocate ", size, " bytes for ", options.path));
      }
    }
    if (size == 0) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(options.path, " is empty; give a size to create it"));
    }
  } else {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(options.path, " is neither a regular file nor a block device"));
  }
  size = AlignDown(size, options.alignment);
  return std::unique_ptr<FileDevice>(new FileDevice(fd, size, options));
}

absl::Status FileDevice::PreadAll(uint64_t offset, void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::pread(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("pread ", path_, " at ", offset));
    }
    if (n == 0) return absl::OutOfRangeError(absl::StrCat("short read of ", path_, " at ", offset));
    p += n;
    offset += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FileDevice::PwriteAll(uint64_t offset, const void* buf, size_t len) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::pwrite(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("pwrite ", path_, " at ", offset));
    }
    if (n == 0) return absl::InternalError(absl::StrCat("pwrite ", path_, " at ", offset, " wrote nothing"));
    p += n;
    offset += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FileDevice::UringIo(bool write, uint64_t offset, void* buf, size_t len) {
  TMEM_ASSIGN_OR_RETURN(io_uring * ring, rings_->Acquire());
  absl::Status status;
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0 && status.ok()) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    if (write) {
      io_uring_prep_write(sqe, fd_, p, static_cast<unsigned>(len), offset);
    } else {
      io_uring_prep_read(sqe, fd_, p, static_cast<unsigned>(len), offset);
    }
    int rc = io_uring_submit_and_wait(ring, 1);
    io_uring_cqe* cqe = nullptr;
    if (rc >= 0) rc = io_uring_wait_cqe(ring, &cqe);
    if (rc < 0) {
      status = ErrnoStatus(-rc, "io_uring submit");
      break;
    }
    int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res < 0) {
      status = ErrnoStatus(-res, absl::StrCat(write ? "io_uring write " : "io_uring read ", path_, " at ", offset));
    } else if (res == 0) {
      status = absl::OutOfRangeError(absl::StrCat("short I/O on ", path_, " at ", offset));
    } else {
      p += res;
      offset += static_cast<uint64_t>(res);
      len -= static_cast<size_t>(res);
    }
  }
  rings_->Release(ring);
  return status;
}

absl::Status FileDevice::Read(uint64_t offset, void* buf, size_t len) {
  TMEM_RETURN_IF_ERROR(CheckIo(*this, offset, buf, len));
  if (engine_ == IoEngine::kUring) return UringIo(false, offset, buf, len);
  return PreadAll(offset, buf, len);
}

void FileDevice::ReadMany(std::span<ReadOp> ops) {
  if (ops.size() <= 1 || !batch_uring_ok_.load(std::memory_order_relaxed)) {
    BlockDevice::ReadMany(ops);
    return;
  }
  absl::StatusOr<io_uring*> acquired = batch_rings_->Acquire();
  if (!acquired.ok()) {
    // ENOSYS (old kernel) or EPERM (seccomp): remember, and read one by one from now on.
    batch_uring_ok_.store(false, std::memory_order_relaxed);
    BlockDevice::ReadMany(ops);
    return;
  }
  io_uring* ring = *acquired;
  std::vector<uint8_t> done(ops.size(), 0);
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i].status = CheckIo(*this, ops[i].offset, ops[i].buf, ops[i].len);
    if (!ops[i].status.ok()) done[i] = 1;
  }
  // A read left undone by a failed ring is finished with pread.
  auto finish_sync = [&](size_t i, size_t already) {
    ReadOp& op = ops[i];
    op.status = PreadAll(op.offset + already, static_cast<uint8_t*>(op.buf) + already, op.len - already);
    done[i] = 1;
  };
  size_t next = 0;
  unsigned inflight = 0;
  bool ring_ok = true;
  while (ring_ok && (next < ops.size() || inflight > 0)) {
    while (next < ops.size() && inflight < kBatchDepth) {
      if (done[next]) {
        ++next;
        continue;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (sqe == nullptr) break;
      io_uring_prep_read(sqe, fd_, ops[next].buf, static_cast<unsigned>(ops[next].len), ops[next].offset);
      io_uring_sqe_set_data64(sqe, next);
      ++next;
      ++inflight;
    }
    if (inflight == 0) break;
    // Every read of the batch is needed before returning: wait for all in flight in one call
    // (waiting for one at a time costs a syscall and a wakeup per completion).
    int rc = io_uring_submit_and_wait(ring, inflight);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      ring_ok = false;
      break;
    }
    io_uring_cqe* cqe = nullptr;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      const size_t i = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
      ++seen;
      SettleRingRead(ops[i], cqe->res);
      done[i] = 1;
    }
    io_uring_cq_advance(ring, seen);
    inflight -= seen;
  }
  if (ring_ok) {
    batch_rings_->Release(ring);
    return;
  }
  // The ring failed with reads possibly in flight: tear it down (the kernel reaps them) and
  // redo every unfinished read synchronously; a late completion writes the same bytes.
  RingPool::Discard(ring);
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!done[i]) finish_sync(i, 0);
  }
}

// The loop's reads on an io_uring: each op is one SQE; a batch is done when its last op
// completed. At most kQueueDepth ops are in the kernel at once (the rest wait here, in order),
// so completions never overflow the ring. Short or interrupted reads are finished with pread.
class FileDevice::UringReadQueue final : public ReadQueue {
 public:
  UringReadQueue(FileDevice* device, int event_fd) : device_(device), event_fd_(event_fd) {}
  static std::unique_ptr<ReadQueue> Create(FileDevice* device) {
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return nullptr;
    auto q = std::make_unique<UringReadQueue>(device, fd);
    // The queue's one thread submits and reaps: completions wait for it to reap them (no
    // interrupt of whatever it runs meanwhile; the eventfd still says when there are some).
    // Kernels before 6.1 take the ring without these flags.
    q->deferred_ =
        io_uring_queue_init(kQueueDepth, &q->ring_, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) == 0;
    if (!q->deferred_ && io_uring_queue_init(kQueueDepth, &q->ring_, 0) < 0) return nullptr;  // closes fd
    q->ring_ok_ = true;
    if (io_uring_register_eventfd(&q->ring_, fd) < 0) return nullptr;
    return q;
  }
  ~UringReadQueue() override {
    if (ring_ok_) {
      // Every read submitted is done before this returns (the callers settle their batches
      // next): those in the kernel are waited for, those still waiting are run.
      reaping_ = true;
      while (in_kernel_ > 0 || !waiting_.empty()) {
        Feed();
        if (in_kernel_ == 0) break;
        const int rc = io_uring_submit_and_wait(&ring_, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) break;
        CompleteAll();
      }
      // What the ring could not take is read here.
      while (!waiting_.empty()) {
        const Pending p = waiting_.front();
        waiting_.pop_front();
        auto b = batches_.find(p.tag);
        if (b == batches_.end()) continue;
        ReadOp& op = b->second.ops[p.op];
        op.status = device_->PreadAll(op.offset, op.buf, op.len);
        if (--b->second.left == 0) Finished(p.tag);
      }
      if (in_kernel_ == 0) {
        io_uring_queue_exit(&ring_);
      } else {
        // The ring failed with reads in the kernel: they count as failed (their pages miss),
        // and the ring is left to the kernel rather than torn down under them.
        for (const auto& [id, p] : inflight_ops_) {
          auto b = batches_.find(p.tag);
          if (b != batches_.end()) b->second.ops[p.op].status = absl::InternalError("io_uring failed at shutdown");
        }
      }
    }
    ::close(event_fd_);
  }

  void Submit(std::span<ReadOp> ops, uint64_t tag) override {
    Batch& b = batches_[tag];
    b.ops = ops;
    b.left = ops.size();
    for (size_t i = 0; i < ops.size(); ++i) {
      ops[i].status = CheckIo(*device_, ops[i].offset, ops[i].buf, ops[i].len);
      if (!ops[i].status.ok()) {
        --b.left;
        continue;
      }
      waiting_.push_back({tag, i});
    }
    if (b.left == 0) Finished(tag);
    if (!plugged_) Feed();
  }
  void Plug() override { plugged_ = true; }
  bool plugs() const override { return true; }
  void Unplug() override {
    plugged_ = false;
    Feed();
  }

  void Reap(std::vector<uint64_t>* done) override {
    uint64_t n;
    [[maybe_unused]] ssize_t r = ::read(event_fd_, &n, sizeof(n));
    reaping_ = true;  // batches finished now are handed out below: no wakeup for them
    // The completions the kernel holds for us. One call may post only some of them (recent kernels
    // run a bounded batch of deferred work per call); posting the rest signals the eventfd again,
    // so they are reaped on the loop's next turn.
    if (deferred_) io_uring_get_events(&ring_);
    CompleteAll();
    reaping_ = false;
    if (!plugged_) Feed();
    done->insert(done->end(), ready_.begin(), ready_.end());
    ready_.clear();
  }
  int event_fd() const override { return event_fd_; }
  size_t in_flight() const override { return batches_.size() + ready_.size(); }

 private:
  struct Batch {
    std::span<ReadOp> ops;
    size_t left = 0;
  };
  struct Pending {
    uint64_t tag;
    size_t op;
  };

  // Moves waiting ops into the kernel, up to the depth.
  void Feed() {
    unsigned queued = 0;
    while (!waiting_.empty() && in_kernel_ < kQueueDepth) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) break;
      const Pending p = waiting_.front();
      waiting_.pop_front();
      ReadOp& op = batches_[p.tag].ops[p.op];
      io_uring_prep_read(sqe, device_->fd_, op.buf, static_cast<unsigned>(op.len), op.offset);
      const uint64_t id = next_id_++;
      inflight_ops_[id] = p;
      io_uring_sqe_set_data64(sqe, id);
      ++in_kernel_;
      ++queued;
    }
    if (queued == 0 && io_uring_sq_ready(&ring_) == 0) return;
    const int rc = io_uring_submit(&ring_);
    if (rc < 0) {
      // Left in the submission queue: the next Submit or Reap tries again.
      TMEM_LOG_RATE_LIMITED(Warning) << "io_uring_submit: " << std::strerror(-rc) << "; retried on the next turn";
    }
  }

  // Every completion the ring holds.
  void CompleteAll() {
    io_uring_cqe* cqe = nullptr;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      Complete(cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
  }

  void Complete(io_uring_cqe* cqe) {
    --in_kernel_;
    auto it = inflight_ops_.find(io_uring_cqe_get_data64(cqe));
    if (it == inflight_ops_.end()) return;
    const Pending p = it->second;
    inflight_ops_.erase(it);
    auto b = batches_.find(p.tag);
    if (b == batches_.end()) return;
    device_->SettleRingRead(b->second.ops[p.op], cqe->res);
    if (--b->second.left == 0) Finished(p.tag);
  }

  void Finished(uint64_t tag) {
    batches_.erase(tag);
    ready_.push_back(tag);
    if (reaping_) return;
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t w = ::write(event_fd_, &one, sizeof(one));  // Reap hands it out
  }

  FileDevice* const device_;
  const int event_fd_;
  io_uring ring_{};
  bool ring_ok_ = false;
  bool deferred_ = false;  // IORING_SETUP_DEFER_TASKRUN: completions are posted when reaped
  bool plugged_ = false;   // Submit queues only (Plug/Unplug)
  unsigned in_kernel_ = 0;
  bool reaping_ = false;
  uint64_t next_id_ = 1;
  absl::flat_hash_map<uint64_t, Batch> batches_;  // by tag, until finished
  absl::flat_hash_map<uint64_t, Pending> inflight_ops_;
  std::deque<Pending> waiting_;
  std::vector<uint64_t> ready_;
};

void FileDevice::SettleRingRead(ReadOp& op, int res) {
  if (res == static_cast<int>(op.len)) return;  // whole
  if (res > 0 || res == -EINTR || res == -EAGAIN) {
    const size_t already = res > 0 ? static_cast<size_t>(res) : 0;
    op.status = PreadAll(op.offset + already, static_cast<uint8_t*>(op.buf) + already, op.len - already);
  } else if (res == 0) {
    op.status = absl::OutOfRangeError(absl::StrCat("short read of ", path_, " at ", op.offset));
  } else {
    op.status = ErrnoStatus(-res, absl::StrCat("io_uring read ", path_, " at ", op.offset));
  }
}

std::unique_ptr<ReadQueue> FileDevice::NewReadQueue() {
  if (batch_uring_ok_.load(std::memory_order_relaxed)) {
    if (std::unique_ptr<ReadQueue> q = UringReadQueue::Create(this)) return q;
  }
  return BlockDevice::NewReadQueue();
}

absl::Status FileDevice::Write(uint64_t offset, const void* buf, size_t len) {
  TMEM_RETURN_IF_ERROR(CheckIo(*this, offset, buf, len));
  if (engine_ == IoEngine::kUring) return UringIo(true, offset, const_cast<void*>(buf), len);
  return PwriteAll(offset, buf, len);
}

absl::Status FileDevice::Sync() {
  if (::fdatasync(fd_) != 0) return ErrnoStatus(errno, absl::StrCat("fdatasync ", path_));
  return absl::OkStatus();
}

std::string FileDevice::Describe() const { return absl::StrCat("file:", path_); }

}  // namespace tmem::io
