// CoordinatorServer: the coordinator's gRPC server: the public lattice.v1 API, the
// worker control plane, the standard grpc.health.v1 service (lattice.v1.Lattice is
// SERVING once the instance is ready) and server reflection.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "coordinator/api_service.h"
#include "coordinator/control_service.h"
#include "coordinator/instance.h"

namespace lattice {

struct CoordinatorOptions {
  std::string listen_address = "0.0.0.0:50051";  // port 0: any free port, see port()
  // The first instance's options; instance i gets id i, launch ranks from i * world
  // size, and its own run id.
  InstanceOptions instance;
  int32_t num_instances = 1;
  ApiOptions api;
  TextServiceOptions text;  // the tokenizer and chat template (from the model directory)
};

class CoordinatorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorOptions& options);
  ~CoordinatorServer();

  int port() const { return port_; }
  Instance& instance(int i = 0) { return *instances_[i]; }
  // Stops the workers, then the server (in-flight calls end with UNAVAILABLE).
  void Shutdown(const std::string& reason);
  void Wait() { server_->Wait(); }

 private:
  CoordinatorServer() = default;

  std::vector<std::unique_ptr<Instance>> instances_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<TextService> text_;
  std::unique_ptr<ApiService> api_;
  std::unique_ptr<ControlService> control_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::thread health_;
  std::atomic<bool> stopping_{false};
};

}  // namespace lattice
