// The C++ RAII wrapper, built with -Wall -Wextra -Werror: construct, capture
// through string_view and span overloads, stats (redaction's counters
// included), and a bad config throwing capline::Error. Usage: wrapper SPOOL DEST
#include <capline.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  try {
    capline::Engine bad("{\"EndpointName\":1}");
    std::puts("FAIL: a bad config did not throw");
    return 1;
  } catch (const capline::Error& e) {
    if (e.code() != CAPLINE_ERR_CONFIG || std::strstr(e.what(), "EndpointName") == nullptr) {
      std::printf("FAIL: %d %s\n", e.code(), e.what());
      return 1;
    }
  }
  std::string config = std::string("{\"EndpointName\":\"cpp\",\"DataCaptureConfig\":{\"InitialSamplingPercentage\":100,") +
                       "\"DestinationS3Uri\":\"file://" + argv[2] +
                       "\",\"CaptureOptions\":[{\"CaptureMode\":\"InputAndOutput\"}]},\"Engine\":{\"SpoolDir\":\"" +
                       argv[1] +
                       "\",\"Redaction\":{\"CsvColumns\":[0],\"JsonPaths\":[\"$.ssn\"],"
                       "\"OnUnparsable\":\"Drop\"}}}";
  capline_stats_t s{};
  {
    capline::Engine engine(config);
    std::string_view request = "1,2,3\n", response = "0.75";
    int kept = 0, expected = 1000;
    for (int i = 0; i < 1000; i++) {
      std::string id = "cpp-" + std::to_string(i);
      kept += engine.capture(request, "text/csv", response, "text/csv", id) == CAPLINE_KEPT;
    }
#if __cplusplus >= 202002L
    std::vector<std::byte> blob(64, std::byte{0xff});
    kept += engine.capture(std::span<const std::byte>(blob), "application/octet-stream",
                           std::span<const std::byte>(blob), "application/octet-stream") == CAPLINE_KEPT;
    expected += 1;
#endif
    // A JSON body that does not parse: kept by capture(), dropped by the
    // writer's redaction (OnUnparsable: Drop).
    bool unparsable_kept = engine.capture(std::string_view("{\"ssn\": "), "application/json",
                                          std::string_view("{}"), "application/json") == CAPLINE_KEPT;
    engine.flush(10000);
    s = engine.stats();
    if (kept != expected || !unparsable_kept || s.kept != static_cast<uint64_t>(expected) + 1 ||
        s.records_written != static_cast<uint64_t>(expected) || s.records_redacted != 1000 ||
        s.redaction_unparsable != 1 || s.dropped_unparsable != 1 || s.dropped_io_error != 0 ||
        s.segments_unsealed != 0 || s.gate_watermark_closed || s.gate_spool_closed) {
      std::printf("FAIL: kept %d, stats kept %llu written %llu redacted %llu unparsable %llu dropped %llu\n", kept,
                  static_cast<unsigned long long>(s.kept), static_cast<unsigned long long>(s.records_written),
                  static_cast<unsigned long long>(s.records_redacted),
                  static_cast<unsigned long long>(s.redaction_unparsable),
                  static_cast<unsigned long long>(s.dropped_unparsable));
      return 1;
    }
  }  // the destructor shuts down and frees
  std::printf("wrapper ok: %llu records (%llu redacted, %llu dropped as unparsable), version %s\n",
              static_cast<unsigned long long>(s.records_written), static_cast<unsigned long long>(s.records_redacted),
              static_cast<unsigned long long>(s.dropped_unparsable), capline_version());
  return 0;
}
