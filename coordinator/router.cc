// Instance routing (see router.h).
#include "coordinator/router.h"

#include <algorithm>
#include <limits>

#include "coordinator/block_pool.h"

namespace lattice {

Instance* Router::Route(std::span<const int32_t> prompt_ids) const {
  if (instances_.size() == 1) return instances_[0]->healthy() ? instances_[0] : nullptr;
  std::vector<int32_t> loads(instances_.size(), std::numeric_limits<int32_t>::max());
  int32_t least = std::numeric_limits<int32_t>::max();
  size_t least_index = 0;
  for (size_t i = 0; i < instances_.size(); ++i) {
    if (!instances_[i]->healthy()) continue;
    loads[i] = instances_[i]->load();
    if (loads[i] < least) {
      least = loads[i];
      least_index = i;
    }
  }
  if (least == std::numeric_limits<int32_t>::max()) return nullptr;
  // Affinity by the first block: the part of a prompt most often shared (system prompts).
  const size_t n = std::min<size_t>(prompt_ids.size(), static_cast<size_t>(instances_[0]->block_size()));
  const size_t preferred = BlockPool::HashBlock(0, prompt_ids.first(n)) % instances_.size();
  if (loads[preferred] != std::numeric_limits<int32_t>::max() && loads[preferred] <= least + affinity_slack_) {
    return instances_[preferred];
  }
  return instances_[least_index];
}

}  // namespace lattice
