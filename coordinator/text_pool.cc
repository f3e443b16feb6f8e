// See text_pool.h.
#include "coordinator/text_pool.h"

namespace lattice {

TextPool::TextPool(int num_threads) {
  for (int i = 0; i < std::max(num_threads, 1); ++i) threads_.emplace_back([this] { Loop(); });
}

TextPool::~TextPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
}

void TextPool::Post(std::function<void()> task, bool urgent) {
  absl::MutexLock lock(&mu_);
  (urgent ? urgent_ : tasks_).push_back(std::move(task));
}

void TextPool::Loop() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](TextPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->stopping_ || !p->urgent_.empty() || !p->tasks_.empty();
          },
          this));
      auto& queue = !urgent_.empty() ? urgent_ : tasks_;
      if (queue.empty()) return;  // stopping, and nothing left
      task = std::move(queue.front());
      queue.pop_front();
    }
    task();
  }
}

}  // namespace lattice
