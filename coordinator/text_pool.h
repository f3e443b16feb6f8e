// TextPool: a few threads that do the coordinator's text work (chat templates,
// tokenization, detokenization, stop strings) so that neither the scheduler thread nor
// gRPC's threads carry it. Tasks run in no particular order across threads; a caller
// that needs order posts its next task only from its previous one (see GenerateCall).
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace lattice {

class TextPool {
 public:
  explicit TextPool(int num_threads);
  // Runs the tasks already posted, then joins the threads.
  ~TextPool();
  TextPool(const TextPool&) = delete;
  TextPool& operator=(const TextPool&) = delete;

  // Any thread. Never blocks on the task. Urgent tasks (draining streams' updates) run
  // before the others (preparing prompts: templates and long encodes), so a burst of long
  // prompts does not stall running streams.
  void Post(std::function<void()> task, bool urgent = false);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> urgent_ ABSL_GUARDED_BY(mu_);
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace lattice
