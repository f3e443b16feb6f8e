// ControlService: the coordinator's side of the worker control plane. Each worker
// stream is one reactor (no thread per stream): its first message must be Register,
// which joins the worker to the instance; later messages go to the instance; writes
// are queued and issued one at a time.
#pragma once

#include "coordinator/instance.h"
#include "lattice/internal/v1/control.grpc.pb.h"

namespace lattice {

class ControlService final : public pb::WorkerControl::CallbackService {
 public:
  explicit ControlService(Instance& instance) : instance_(instance) {}
  grpc::ServerBidiReactor<pb::WorkerMessage, pb::CoordinatorMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Instance& instance_;
};

}  // namespace lattice
