// ControlService: the coordinator's side of the worker control plane. Each worker
// stream is one reactor (no thread per stream): its first message must be Register,
// which joins the worker to an instance (launch rank r belongs to instance
// r / world_size, or the first with room when the worker has no rank); later messages
// go to that instance; writes are queued and issued one at a time.
#pragma once

#include <vector>

#include "coordinator/instance.h"
#include "lattice/internal/v1/control.grpc.pb.h"

namespace lattice {

class ControlService final : public pb::WorkerControl::CallbackService {
 public:
  explicit ControlService(std::vector<Instance*> instances) : instances_(std::move(instances)) {}
  grpc::ServerBidiReactor<pb::WorkerMessage, pb::CoordinatorMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  std::vector<Instance*> instances_;
};

}  // namespace lattice
