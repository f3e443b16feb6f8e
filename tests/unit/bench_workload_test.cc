// The workload of `lattice bench` (cli/bench_workload.h): seeded and reproducible,
// prompts that avoid eos, lengths in their ranges, shared prefixes where asked, arrival
// times at the asked rate, and clear errors for flags that cannot fit the model.
#include "cli/bench_workload.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

namespace lattice {
namespace {

const BenchModelLimits kLimits{
    .vocab_size = 512, .max_model_len = 256, .eos_token_ids = {2, 0, 511}};

BenchWorkloadOptions Random(int num_prompts, int input_len, int output_len) {
  BenchWorkloadOptions o;
  o.num_prompts = num_prompts;
  o.random_input_len = input_len;
  o.random_output_len = output_len;
  return o;
}

void ExpectNoEosAndInVocab(const std::vector<BenchRequest>& requests) {
  for (const BenchRequest& r : requests) {
    for (int32_t id : r.prompt_ids) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, kLimits.vocab_size);
      ASSERT_TRUE(id != 0 && id != 2 && id != 511) << "eos id " << id << " in a prompt";
    }
  }
}

TEST(BenchWorkloadTest, RandomIsSeededAndAvoidsEos) {
  BenchWorkloadOptions o = Random(200, 16, 8);
  const auto a = BuildBenchWorkload(o, kLimits);
  const auto b = BuildBenchWorkload(o, kLimits);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->size(), 200u);
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].prompt_ids, (*b)[i].prompt_ids);
    EXPECT_EQ((*a)[i].prompt_ids.size(), 16u);  // range ratio 0: exact lengths
    EXPECT_EQ((*a)[i].output_len, 8);
    EXPECT_EQ((*a)[i].prefix_group, -1);
  }
  ExpectNoEosAndInVocab(*a);
  // Every non-eos id is reachable: 200 x 16 draws over 509 ids hit both ends' neighbours.
  std::set<int32_t> seen;
  for (const BenchRequest& r : *a) seen.insert(r.prompt_ids.begin(), r.prompt_ids.end());
  EXPECT_TRUE(seen.count(1) && seen.count(3) && seen.count(510));
  o.seed = 1;
  EXPECT_NE(BuildBenchWorkload(o, kLimits)->front().prompt_ids, a->front().prompt_ids);
}

TEST(BenchWorkloadTest, RangeRatioAndSharedPrefix) {
  BenchWorkloadOptions o = Random(300, 20, 10);
  o.random_range_ratio = 0.5;
  o.random_prefix_len = 12;
  const auto requests = BuildBenchWorkload(o, kLimits);
  ASSERT_TRUE(requests.ok()) << requests.status();
  std::set<size_t> input_lens;
  std::set<int32_t> output_lens;
  for (const BenchRequest& r : *requests) {
    EXPECT_EQ(std::vector<int32_t>(r.prompt_ids.begin(), r.prompt_ids.begin() + 12),
              std::vector<int32_t>(requests->front().prompt_ids.begin(),
                                   requests->front().prompt_ids.begin() + 12));
    EXPECT_EQ(r.prefix_group, 0);
    input_lens.insert(r.prompt_ids.size() - 12);
    output_lens.insert(r.output_len);
  }
  // Uniform in [10, 30] and [5, 15], both ends included.
  EXPECT_EQ(*input_lens.begin(), 10u);
  EXPECT_EQ(*input_lens.rbegin(), 30u);
  EXPECT_EQ(*output_lens.begin(), 5);
  EXPECT_EQ(*output_lens.rbegin(), 15);
  ExpectNoEosAndInVocab(*requests);
}

TEST(BenchWorkloadTest, PrefixRepetitionSharesAFewPrefixes) {
  BenchWorkloadOptions o;
  o.num_prompts = 30;
  o.dataset_name = "prefix_repetition";
  o.prefix_repetition_prefix_len = 40;
  o.prefix_repetition_suffix_len = 5;
  o.prefix_repetition_num_prefixes = 3;
  o.prefix_repetition_output_len = 4;
  const auto requests = BuildBenchWorkload(o, kLimits);
  ASSERT_TRUE(requests.ok()) << requests.status();
  std::vector<std::vector<int32_t>> prefix_of_group(3);
  std::vector<int> count(3);
  for (const BenchRequest& r : *requests) {
    ASSERT_EQ(r.prompt_ids.size(), 45u);
    EXPECT_EQ(r.output_len, 4);
    ASSERT_GE(r.prefix_group, 0);
    ASSERT_LT(r.prefix_group, 3);
    ++count[r.prefix_group];
    const std::vector<int32_t> prefix(r.prompt_ids.begin(), r.prompt_ids.begin() + 40);
    if (prefix_of_group[r.prefix_group].empty()) prefix_of_group[r.prefix_group] = prefix;
    EXPECT_EQ(prefix, prefix_of_group[r.prefix_group]);
  }
  EXPECT_EQ(count, std::vector<int>({10, 10, 10}));
  EXPECT_NE(prefix_of_group[0], prefix_of_group[1]);
  // Shuffled: not all of one group first.
  EXPECT_FALSE((*requests)[0].prefix_group == (*requests)[1].prefix_group &&
               (*requests)[1].prefix_group == (*requests)[2].prefix_group &&
               (*requests)[2].prefix_group == (*requests)[3].prefix_group);
  ExpectNoEosAndInVocab(*requests);
}

class BenchLengthsFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text) {
    std::ofstream(path_) << text;
    return path_.string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::filesystem::path path_ = std::filesystem::temp_directory_path() /
                                ("bench_lengths_" + std::to_string(::getpid()) + ".txt");
};

TEST_F(BenchLengthsFileTest, SamplesThePairsWithReplacement) {
  BenchWorkloadOptions o;
  o.num_prompts = 100;
  o.dataset_name = "lengths";
  o.dataset_path = Write("# input output\n5 3\n\n  20 7  # a long one\n");
  const auto requests = BuildBenchWorkload(o, kLimits);
  ASSERT_TRUE(requests.ok()) << requests.status();
  int short_ones = 0;
  for (const BenchRequest& r : *requests) {
    const bool is_short = r.prompt_ids.size() == 5 && r.output_len == 3;
    EXPECT_TRUE(is_short || (r.prompt_ids.size() == 20 && r.output_len == 7));
    short_ones += is_short;
  }
  EXPECT_GT(short_ones, 20);
  EXPECT_LT(short_ones, 80);
}

TEST_F(BenchLengthsFileTest, BadLinesAndTooLongPairsAreErrorsNamingTheLine) {
  BenchWorkloadOptions o;
  o.num_prompts = 4;
  o.dataset_name = "lengths";
  o.dataset_path = Write("5 3\n5 x\n");
  auto r = BuildBenchWorkload(o, kLimits);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(":2: expected"), std::string::npos) << r.status();
  o.dataset_path = Write("5 3\n0 3\n");
  EXPECT_FALSE(BuildBenchWorkload(o, kLimits).ok());
  o.dataset_path = Write("5 3\n250 10\n");
  r = BuildBenchWorkload(o, kLimits);
  EXPECT_NE(r.status().message().find("line 2: 250 + 10"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("max_model_len of 256"), std::string::npos) << r.status();
  o.dataset_path = "/nonexistent/lengths.txt";
  EXPECT_EQ(BuildBenchWorkload(o, kLimits).status().code(), absl::StatusCode::kNotFound);
  o.dataset_path = "";
  EXPECT_NE(BuildBenchWorkload(o, kLimits).status().message().find("--dataset-path"),
            std::string::npos);
}

TEST(BenchWorkloadTest, FlagsThatCannotFitAreErrorsNamingThem) {
  BenchWorkloadOptions o = Random(0, 16, 8);
  EXPECT_NE(BuildBenchWorkload(o, kLimits).status().message().find("--num-prompts"),
            std::string::npos);
  o = Random(4, 200, 40);
  o.random_range_ratio = 0.1;
  const absl::Status s = BuildBenchWorkload(o, kLimits).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("220 prompt + 44 output = 264"), std::string::npos) << s;
  EXPECT_NE(s.message().find("max_model_len of 256"), std::string::npos) << s;
  o = Random(4, 16, 8);
  o.random_range_ratio = 1.0;
  EXPECT_NE(BuildBenchWorkload(o, kLimits).status().message().find("--random-range-ratio"),
            std::string::npos);
  o = Random(4, 16, 0);
  EXPECT_NE(BuildBenchWorkload(o, kLimits).status().message().find("--random-output-len"),
            std::string::npos);
  o = Random(4, 16, 8);
  o.dataset_name = "sharegpt";
  EXPECT_NE(BuildBenchWorkload(o, kLimits).status().message().find("--dataset-name"),
            std::string::npos);
  EXPECT_FALSE(BuildBenchWorkload(Random(4, 16, 8),
                                  {.vocab_size = 1, .max_model_len = 256, .eos_token_ids = {0}})
                   .ok());
}

TEST(BenchWorkloadTest, ArrivalTimesHaveTheAskedRate) {
  const std::vector<double> all_at_once = BenchArrivalTimes(5, INFINITY, 1.0, 0);
  EXPECT_EQ(all_at_once, std::vector<double>(5, 0.0));
  for (double burstiness : {1.0, 0.5, 3.0}) {
    const std::vector<double> t = BenchArrivalTimes(20001, 50.0, burstiness, 7);
    EXPECT_EQ(t.front(), 0.0);
    for (size_t i = 1; i < t.size(); ++i) ASSERT_GE(t[i], t[i - 1]);
    // Mean interval 1 / 50 s within 3 % (20000 samples; the std of the mean is < 1.5 %).
    EXPECT_NEAR(t.back() / 20000, 0.02, 0.02 * 0.03) << "burstiness " << burstiness;
    // Variance of a gamma interval: shape * scale^2 = 1 / (rate^2 * burstiness).
    double sum_sq = 0;
    for (size_t i = 1; i < t.size(); ++i)
      sum_sq += (t[i] - t[i - 1] - 0.02) * (t[i] - t[i - 1] - 0.02);
    EXPECT_NEAR(sum_sq / 20000, 1.0 / (2500 * burstiness), 0.15 / (2500 * burstiness))
        << burstiness;
  }
  EXPECT_EQ(BenchArrivalTimes(100, 10.0, 1.0, 3), BenchArrivalTimes(100, 10.0, 1.0, 3));
}

}  // namespace
}  // namespace lattice
