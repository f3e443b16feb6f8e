// The TCP rendezvous store: set/get/wait/check, blocking gets released by another
// client's set, timeouts that name the key, many clients, clients started before the
// server, and malformed input that must not bring the server down.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "gloo/common/error.h"
#include "parallel/store_wire.h"
#include "parallel/tcp_store.h"

namespace lattice {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<TcpStoreServer> StartServer() {
  absl::StatusOr<std::unique_ptr<TcpStoreServer>> server =
      TcpStoreServer::Start({.bind_address = "127.0.0.1", .port = 0, .max_connections = 4096});
  EXPECT_TRUE(server.ok()) << server.status();
  return *std::move(server);
}

std::unique_ptr<TcpStoreClient> Client(int port, milliseconds timeout = milliseconds(10'000)) {
  absl::StatusOr<std::unique_ptr<TcpStoreClient>> client = TcpStoreClient::Connect(
      "127.0.0.1", port, {.connect_timeout = milliseconds(5'000), .timeout = timeout});
  EXPECT_TRUE(client.ok()) << client.status();
  return *std::move(client);
}

// A raw socket to the server, for sending what no client would.
int RawConnect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

TEST(ParallelTcpStore, SetGetWaitCheck) {
  auto server = StartServer();
  EXPECT_GT(server->port(), 0);
  auto client = Client(server->port());
  ASSERT_TRUE(client->Set("a", "alpha").ok());
  ASSERT_TRUE(client->Set("empty", "").ok());
  std::string binary("\0\1\2\xff", 4);
  ASSERT_TRUE(client->Set("bin", binary).ok());
  EXPECT_EQ(*client->Get("a"), "alpha");
  EXPECT_EQ(*client->Get("empty"), "");
  EXPECT_EQ(*client->Get("bin"), binary);
  EXPECT_TRUE(client->Wait({"a", "bin"}, milliseconds(100)).ok());
  EXPECT_TRUE(*client->Check({"a", "empty"}));
  EXPECT_FALSE(*client->Check({"a", "missing"}));
  ASSERT_TRUE(client->Set("a", "again").ok());  // overwrite
  EXPECT_EQ(*client->Get("a"), "again");
  // Large values pass whole.
  const std::string big(8 << 20, 'x');
  ASSERT_TRUE(client->Set("big", big).ok());
  EXPECT_EQ(*client->Get("big"), big);
}

TEST(ParallelTcpStore, GetBlocksUntilAnotherClientSets) {
  auto server = StartServer();
  auto waiter = Client(server->port());
  auto setter = Client(server->port());
  std::thread later([&] {
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_TRUE(setter->Set("late", "value").ok());
  });
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> got = waiter->Get("late", milliseconds(5'000));
  later.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "value");
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(90));
}

TEST(ParallelTcpStore, TimeoutsNameTheKeyAndTheTimeout) {
  auto server = StartServer();
  auto client = Client(server->port());
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> got = client->Get("tp.0/rank_1", milliseconds(200));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(190));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(got.status().message().find("'tp.0/rank_1' was not set within 200 ms"),
            std::string::npos)
      << got.status();
  ASSERT_TRUE(client->Set("here", "1").ok());
  absl::Status waited = client->Wait({"here", "gone1", "gone2"}, milliseconds(100));
  EXPECT_EQ(waited.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(waited.message().find("keys 'gone1', 'gone2' were not set within 100 ms"),
            std::string::npos)
      << waited;
  // The connection is still good after a timeout.
  EXPECT_EQ(*client->Get("here"), "1");
  // Through gloo's interface the same error is an exception.
  try {
    client->wait({"never"}, milliseconds(50));
    ADD_FAILURE() << "wait did not throw";
  } catch (const gloo::IoException& e) {
    EXPECT_NE(std::string(e.what()).find("'never' was not set within 50 ms"), std::string::npos)
        << e.what();
  }
}

TEST(ParallelTcpStore, ManyClientsRendezvous) {
  auto server = StartServer();
  constexpr int kClients = 48;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto client = Client(server->port());
      if (!client->Set("rank_" + std::to_string(i), std::to_string(i * i)).ok()) ++failures;
      for (int j = 0; j < kClients; ++j) {
        absl::StatusOr<std::string> v =
            client->Get("rank_" + std::to_string(j), milliseconds(10'000));
        if (!v.ok() || *v != std::to_string(j * j)) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ParallelTcpStore, ClientsMayStartBeforeTheServer) {
  // Find a free port, then let the client retry while the server is not there yet.
  int port;
  {
    auto probe = StartServer();
    port = probe->port();
  }
  std::unique_ptr<TcpStoreServer> server;
  std::thread starter([&] {
    std::this_thread::sleep_for(milliseconds(300));
    server =
        *TcpStoreServer::Start({.bind_address = "127.0.0.1", .port = port, .max_connections = 16});
  });
  absl::StatusOr<std::unique_ptr<TcpStoreClient>> client =
      TcpStoreClient::Connect("127.0.0.1", port, {.connect_timeout = milliseconds(10'000)});
  starter.join();
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Set("k", "v").ok());

  // Nobody there at all: UNAVAILABLE naming the address, after the connect timeout.
  server.reset();
  absl::StatusOr<std::unique_ptr<TcpStoreClient>> lonely =
      TcpStoreClient::Connect("127.0.0.1", port, {.connect_timeout = milliseconds(200)});
  ASSERT_FALSE(lonely.ok());
  EXPECT_EQ(lonely.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(lonely.status().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos);
}

TEST(ParallelTcpStore, MalformedMessagesDoNotCrashTheServer) {
  auto server = StartServer();
  auto good = Client(server->port());
  ASSERT_TRUE(good->Set("k", "v").ok());
  auto send_raw = [&](const std::string& bytes) {
    const int fd = RawConnect(server->port());
    ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    // The server drops the connection: recv sees EOF (or a reset), not a reply.
    char buffer[16];
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    ::close(fd);
    return n;
  };
  auto frame = [](const std::string& payload) {
    store_wire::Writer w;
    for (char c : payload) w.U8(static_cast<uint8_t>(c));
    return w.Frame();
  };
  EXPECT_LE(send_raw(frame(std::string("\x63", 1))), 0);  // unknown op
  EXPECT_LE(send_raw(frame(std::string("\x01\xff\xff\xff\x7f", 5))),
            0);  // key longer than the frame
  EXPECT_LE(send_raw(frame(std::string("\x02\x01\x00\x00\x00k", 6))),
            0);                                                // get without its timeout
  EXPECT_LE(send_raw(std::string("\xff\xff\xff\xff", 4)), 0);  // a 4 GiB frame
  EXPECT_LE(send_raw(frame("")), 0);                           // empty payload
  // Trailing bytes after a valid request.
  store_wire::Request check{
      .op = store_wire::Op::kCheck, .keys = {"k"}, .value = {}, .timeout_ms = 0};
  std::string payload = store_wire::EncodeRequest(check).substr(4) + "junk";
  EXPECT_LE(send_raw(frame(payload)), 0);
  // Half a frame, then the client vanishes.
  {
    const int fd = RawConnect(server->port());
    ::send(fd, "\x10\x00\x00\x00\x01", 5, MSG_NOSIGNAL);
    ::close(fd);
  }
  // Random garbage.
  std::string noise;
  for (int i = 0; i < 1000; ++i) noise.push_back(static_cast<char>((i * 7919) % 251));
  send_raw(noise);
  // The server still serves the well-behaved client, and new ones.
  EXPECT_EQ(*good->Get("k"), "v");
  auto fresh = Client(server->port());
  EXPECT_EQ(*fresh->Get("k"), "v");
}

TEST(ParallelTcpStore, StopReleasesBlockedClients) {
  auto server = StartServer();
  auto client = Client(server->port());
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(100));
    server->Stop();
  });
  absl::StatusOr<std::string> got = client->Get("never", milliseconds(20'000));
  stopper.join();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  server->Stop();  // idempotent
}

}  // namespace
}  // namespace lattice
