// ApiService: the public lattice.v1 API. Generate is one write reactor per call (no
// thread per stream): it validates the request (a bad field is INVALID_ARGUMENT
// naming it), submits it to the instance, and streams each step's tokens as the
// scheduler thread reports them; a client cancel or deadline cancels the sequence,
// whose blocks are freed by the next step. The one place where absl::Status becomes
// grpc::Status.
#pragma once

#include <atomic>

#include "coordinator/instance.h"
#include "coordinator/router.h"
#include "coordinator/text_service.h"
#include "lattice/v1/lattice.grpc.pb.h"

namespace lattice {

struct ApiOptions {
  pb::ParallelConfig parallel;  // reported by GetModelInfo
  int32_t max_prompt_tokens = 1 << 20;  // before the model's own limit: oversized requests
  int32_t max_stop_token_ids = 64;
  std::string model_name;  // reported by GetModelInfo
};

class ApiService final : public v1::Lattice::CallbackService {
 public:
  ApiService(const Router& router, const TextService& text, const ApiOptions& options)
      : router_(router), text_(text), options_(options) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* context,
                                                           const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context, const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* GetClusterStatus(grpc::CallbackServerContext* context,
                                             const v1::GetClusterStatusRequest* request,
                                             v1::ClusterStatus* response) override;

 private:
  const Router& router_;
  const TextService& text_;
  const ApiOptions options_;
  std::atomic<int64_t> num_requests_{0};
};

// The gRPC status for an absl one (same canonical codes).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace lattice
