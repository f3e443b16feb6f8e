// The coordinator's gRPC server (see server.h).
#include "coordinator/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "base/limits.h"

namespace lattice {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(const CoordinatorOptions& options) {
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  std::vector<Instance*> instances;
  for (int32_t i = 0; i < options.num_instances; ++i) {
    InstanceOptions instance = options.instance;
    instance.id = i;
    const int32_t world = std::max(instance.parallel.tp(), 1) * std::max(instance.parallel.pp(), 1) *
                          std::max(instance.parallel.dp(), 1);
    instance.first_launch_rank = i * world;
    instance.run_id = absl::StrCat(options.instance.run_id, "-", i);
    server->instances_.push_back(std::make_unique<Instance>(instance));
    instances.push_back(server->instances_.back().get());
  }
  server->router_ = std::make_unique<Router>(instances);
  auto text = TextService::Create(options.text);
  if (!text.ok()) return text.status();
  server->text_ = std::move(*text);
  server->api_ = std::make_unique<ApiService>(*server->router_, *server->text_, options.api);
  server->control_ = std::make_unique<ControlService>(instances);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->api_.get());
  builder.RegisterService(server->control_.get());
  builder.SetMaxReceiveMessageSize(kMaxControlMessageBytes);
  builder.SetMaxSendMessageSize(kMaxControlMessageBytes);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus("lattice.v1.Lattice", false);
  // The API is SERVING while some instance is healthy.
  server->health_ = std::thread([s = server.get(), health] {
    bool serving = false;
    while (!s->stopping_) {
      bool healthy = false;
      for (const auto& instance : s->instances_) healthy = healthy || instance->healthy();
      if (healthy != serving) {
        health->SetServingStatus("lattice.v1.Lattice", healthy);
        serving = healthy;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  return server;
}

void CoordinatorServer::Shutdown(const std::string& reason) {
  if (stopping_.exchange(true)) return;
  for (auto& instance : instances_) instance->Shutdown(reason);
  if (health_.joinable()) health_.join();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

CoordinatorServer::~CoordinatorServer() {
  Shutdown("the coordinator is exiting");
  server_->Wait();
}

}  // namespace lattice
