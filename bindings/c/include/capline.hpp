// capline: C++ RAII wrapper over the C ABI (capline.h). Header-only, C++17.
// Reference: docs/C-API.md.
#ifndef CAPLINE_HPP
#define CAPLINE_HPP

#include <capline.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#if __cplusplus >= 202002L
#include <span>
#endif

namespace capline {

/// A failed call: the status code and capline_last_error()'s message.
class Error : public std::runtime_error {
 public:
  Error(int32_t code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  int32_t code() const noexcept { return code_; }

 private:
  int32_t code_;
};

namespace detail {
inline std::string last_error() {
  std::string msg(capline_last_error(nullptr, 0), '\0');
  if (!msg.empty()) capline_last_error(msg.data(), msg.size() + 1);
  return msg;
}
inline void check(int32_t code) {
  if (code < 0) throw Error(code, last_error());
}
}  // namespace detail

/// One engine: started by the constructor, shut down (deadline_ms) and freed
/// by the destructor. Move-only. capture() is safe from any thread at once.
class Engine {
 public:
  /// Starts an engine from a JSON config; throws capline::Error.
  explicit Engine(const std::string& config_json, uint32_t deadline_ms = 5000)
      : deadline_ms_(deadline_ms) {
    detail::check(capline_engine_new(config_json.c_str(), &engine_));
  }
  ~Engine() {
    if (engine_ != nullptr) capline_engine_free(engine_, deadline_ms_);
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  Engine(Engine&& other) noexcept
      : engine_(other.engine_), deadline_ms_(other.deadline_ms_) {
    other.engine_ = nullptr;
  }
  Engine& operator=(Engine&& other) noexcept {
    if (this != &other) {
      if (engine_ != nullptr) capline_engine_free(engine_, deadline_ms_);
      engine_ = other.engine_;
      deadline_ms_ = other.deadline_ms_;
      other.engine_ = nullptr;
    }
    return *this;
  }

  /// Offers one pair; returns the outcome code (CAPLINE_KEPT, ...). Never
  /// throws for an outcome; throws capline::Error only for a bad argument.
  /// An empty inference_id means none; time_unix_ms 0 means now.
  int32_t capture(std::string_view request, std::string_view request_content_type,
                  std::string_view response, std::string_view response_content_type,
                  std::string_view inference_id = {},
                  int64_t time_unix_ms = CAPLINE_TIME_NOW) const {
    capline_event ev{};
    ev.request = reinterpret_cast<const uint8_t*>(request.data());
    ev.request_len = request.size();
    ev.request_content_type = request_content_type.data();
    ev.request_content_type_len = request_content_type.size();
    ev.response = reinterpret_cast<const uint8_t*>(response.data());
    ev.response_len = response.size();
    ev.response_content_type = response_content_type.data();
    ev.response_content_type_len = response_content_type.size();
    if (!inference_id.empty()) {
      ev.inference_id = inference_id.data();
      ev.inference_id_len = inference_id.size();
    }
    ev.time_unix_ms = time_unix_ms;
    int32_t code = capline_capture(engine_, &ev);
    detail::check(code);
    return code;
  }

#if __cplusplus >= 202002L
  /// The same for binary bodies held in spans.
  int32_t capture(std::span<const std::byte> request, std::string_view request_content_type,
                  std::span<const std::byte> response, std::string_view response_content_type,
                  std::string_view inference_id = {},
                  int64_t time_unix_ms = CAPLINE_TIME_NOW) const {
    return capture(std::string_view(reinterpret_cast<const char*>(request.data()), request.size()),
                   request_content_type,
                   std::string_view(reinterpret_cast<const char*>(response.data()), response.size()),
                   response_content_type, inference_id, time_unix_ms);
  }
#endif

  /// Waits until every record kept so far is durable; throws on timeout.
  void flush(uint32_t timeout_ms) const { detail::check(capline_flush(engine_, timeout_ms)); }
  void set_sampling_percentage(double percent) const {
    detail::check(capline_set_sampling_percentage(engine_, percent));
  }
  void set_enabled(bool enabled) const { detail::check(capline_set_enabled(engine_, enabled)); }
  capline_stats_t stats() const {
    capline_stats_t s{};
    detail::check(capline_stats(engine_, &s));
    return s;
  }
  /// The underlying handle, for calls the wrapper does not cover.
  const capline_engine* get() const noexcept { return engine_; }

 private:
  capline_engine* engine_ = nullptr;
  uint32_t deadline_ms_;
};

}  // namespace capline

#endif  // CAPLINE_HPP
