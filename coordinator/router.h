// Router: picks the instance for a request among independent instances of one model
// (a dense model served with --dp D). Least loaded, with prefix affinity: requests
// whose first block of tokens is the same prefer the same instance, so its prefix
// cache serves them, unless that instance is busier than the least loaded by more
// than `affinity_slack` sequences. Thread-safe (instances report their own load).
#pragma once

#include <span>
#include <vector>

#include "coordinator/instance.h"

namespace lattice {

class Router {
 public:
  Router(std::vector<Instance*> instances, int32_t affinity_slack = 8)
      : instances_(std::move(instances)), affinity_slack_(affinity_slack) {}

  // Null when no instance is healthy.
  Instance* Route(std::span<const int32_t> prompt_ids) const;
  const std::vector<Instance*>& instances() const { return instances_; }

 private:
  std::vector<Instance*> instances_;
  int32_t affinity_slack_;
};

}  // namespace lattice
