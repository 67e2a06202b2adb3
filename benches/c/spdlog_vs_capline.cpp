// A C++ server loop emitting one SageMaker capture line per request, two ways,
// in the same run:
//   spdlog : the caller builds the JSON line (escaping, event id, time) and
//            hands it to spdlog's async logger (8192-slot queue, block policy,
//            one worker thread, a basic file sink, pattern "%v");
//   capline: the caller hands the pair to capline_capture (100 % sampling),
//            which does the rest on its writer thread.
// Two phases per shape and system, in the same run:
//   throughput: as fast as the caller can go (spdlog blocks when its queue is
//     full; capline's ring-full refusals are offered again), timed until the
//     data is flushed (spdlog: drained to the file; capline: fdatasync'd);
//   latency: requests paced at a fixed rate both sustain (busy-wait pacing),
//     one call per request (capline: a refusal is a drop, counted), caller-side
//     time per request (steady_clock around the call, its own cost subtracted).
//
// Usage: spdlog_vs_capline DIR [REPS]      (see scripts/bench-spdlog.sh)
#include <capline.h>
#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

using Clock = std::chrono::steady_clock;

struct Shape {
  const char* name;
  std::string request, request_type, response, response_type, encoding;
  long records;       // throughput phase
  long paced;         // latency phase: requests
  double rate;        // latency phase: requests per second
};

// 1 KiB CSV request + 20 B response; 16 KiB quote-dense JSON + 1 KiB JSON.
static Shape csv_shape() {
  std::string req;
  for (int i = 0; req.size() < 1024; i++) req += std::to_string(i * 37 % 1000) + ",";
  req.resize(1023);
  req += "\n";
  return {"1 KiB CSV", req, "text/csv", "0.123456789012345678", "text/csv", "CSV", 400000, 100000, 50000};
}
static Shape json_shape() {
  auto doc = [](size_t size) {
    std::string s = "{\"instances\":[";
    for (int i = 0; s.size() < size - 40; i++) s += "{\"id\":\"r" + std::to_string(i) + "\",\"v\":[1,2,3]},";
    s.back() = ']';
    s += "}";
    return s;
  };
  return {"16 KiB JSON", doc(16384), "application/json", doc(1024), "application/json", "JSON", 60000, 16000, 4000};
}

static void escape(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next() {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

// What a C++ server writes per request to log the pair as a SageMaker line.
static void build_line(std::string& line, const Shape& s) {
  line.clear();
  line += "{\"captureData\":{\"endpointInput\":{\"observedContentType\":\"";
  line += s.request_type;
  line += "\",\"mode\":\"INPUT\",\"data\":\"";
  escape(line, s.request);
  line += "\",\"encoding\":\"" + s.encoding + "\"},\"endpointOutput\":{\"observedContentType\":\"";
  line += s.response_type;
  line += "\",\"mode\":\"OUTPUT\",\"data\":\"";
  escape(line, s.response);
  line += "\",\"encoding\":\"" + s.encoding + "\"}},\"eventMetadata\":{\"eventId\":\"";
  char id[40];
  uint64_t a = next(), b = next();
  snprintf(id, sizeof id, "%08x-%04x-4%03x-8%03x-%012llx", unsigned(a), unsigned(a >> 32) & 0xffff,
           unsigned(a >> 48) & 0xfff, unsigned(b) & 0xfff, (unsigned long long)(b >> 16));
  line += id;
  line += "\",\"inferenceTime\":\"";
  char t[32];
  time_t now = time(nullptr);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%SZ", &tm);
  line += t;
  line += "\"},\"eventVersion\":\"0\"}";
}

struct Result {
  double rps = 0;
  double p50 = 0, p99 = 0, p999 = 0;
  long refused = 0;
};

static double overhead_ns() {
  std::vector<double> v;
  for (int i = 0; i < 100000; i++) {
    auto a = Clock::now();
    auto b = Clock::now();
    v.push_back(std::chrono::duration<double, std::nano>(b - a).count());
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

static Result summarize(std::vector<double>& lat, long records, double secs, double ovh) {
  std::sort(lat.begin(), lat.end());
  auto at = [&](double q) { return std::max(0.0, lat[size_t(q * (lat.size() - 1))] - ovh); };
  Result r;
  r.rps = records / secs;
  r.p50 = at(0.50);
  r.p99 = at(0.99);
  r.p999 = at(0.999);
  return r;
}

// Busy-waits until request i is due (rate 0: never waits).
static void pace(Clock::time_point start, long i, double rate) {
  if (rate <= 0) return;
  auto due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(i / rate));
  while (Clock::now() < due) {
  }
}

static Result run_spdlog(const Shape& s, const std::string& dir, double ovh, double rate) {
  spdlog::init_thread_pool(8192, 1);
  auto logger = spdlog::create_async<spdlog::sinks::basic_file_sink_mt>("cap", dir + "/spdlog.jsonl", true);
  logger->set_pattern("%v");
  long n = rate > 0 ? s.paced : s.records;
  std::vector<double> lat;
  lat.reserve(n);
  std::string line;
  line.reserve(s.request.size() * 2 + 1024);
  auto start = Clock::now();
  for (long i = 0; i < n; i++) {
    pace(start, i, rate);
    auto a = Clock::now();
    build_line(line, s);
    logger->info(line);
    auto b = Clock::now();
    lat.push_back(std::chrono::duration<double, std::nano>(b - a).count());
  }
  logger->flush();
  logger.reset();
  spdlog::shutdown();  // drains the queue and joins the worker
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  return summarize(lat, n, secs, ovh);
}

static Result run_capline(const Shape& s, const std::string& dir, double ovh, double rate) {
  std::string config = "{\"EndpointName\":\"bench\",\"DataCaptureConfig\":{\"InitialSamplingPercentage\":100,"
                       "\"DestinationS3Uri\":\"file://" + dir + "/capline\","
                       "\"CaptureOptions\":[{\"CaptureMode\":\"InputAndOutput\"}],"
                       "\"CaptureContentTypeHeader\":{\"CsvContentTypes\":[\"text/csv\"],"
                       "\"JsonContentTypes\":[\"application/json\"]}},"
                       "\"Engine\":{\"SpoolDir\":\"" + dir + "/spool\"}}";
  capline_engine* e = nullptr;
  if (capline_engine_new(config.c_str(), &e) != CAPLINE_OK) {
    char err[512];
    capline_last_error(err, sizeof err);
    fprintf(stderr, "capline: %s\n", err);
    exit(1);
  }
  capline_event ev{};
  ev.request = reinterpret_cast<const uint8_t*>(s.request.data());
  ev.request_len = s.request.size();
  ev.request_content_type = s.request_type.data();
  ev.request_content_type_len = s.request_type.size();
  ev.response = reinterpret_cast<const uint8_t*>(s.response.data());
  ev.response_len = s.response.size();
  ev.response_content_type = s.response_type.data();
  ev.response_content_type_len = s.response_type.size();
  long n = rate > 0 ? s.paced : s.records;
  std::vector<double> lat;
  lat.reserve(n);
  long refused = 0, kept = 0;
  auto start = Clock::now();
  for (long i = 0; i < n;) {
    pace(start, i, rate);
    auto a = Clock::now();
    int32_t rc = capline_capture(e, &ev);
    auto b = Clock::now();
    if (rc == CAPLINE_KEPT) kept++; else refused++;
    if (rate > 0) {
      // One call per request: a refusal is a drop (counted).
      lat.push_back(std::chrono::duration<double, std::nano>(b - a).count());
      i++;
    } else if (rc == CAPLINE_KEPT) {
      i++;  // throughput: a ring-full refusal is offered again
    }
  }
  capline_flush(e, 600000);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  capline_engine_free(e, 60000);
  if (lat.empty()) lat.push_back(0);
  Result r = summarize(lat, kept, secs, ovh);
  r.refused = refused;
  return r;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR [REPS]\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  int reps = argc > 2 ? atoi(argv[2]) : 3;
  double ovh = overhead_ns();
  printf("steady_clock pair cost %.0f ns (subtracted); %d repetitions, median shown\n", ovh, reps);
  for (const Shape& s : {csv_shape(), json_shape()}) {
    std::vector<Result> sp_t, cl_t, sp_l, cl_l;
    for (int r = 0; r < reps; r++) {
      std::string d = dir + "/" + std::to_string(r) + "-" + (s.encoding == "CSV" ? "csv" : "json");
      std::string mk = "mkdir -p " + d;
      std::string rm = "rm -rf " + d;
      auto phase = [&](double rate, std::vector<Result>& sp, std::vector<Result>& cl) {
        if (system(mk.c_str()) != 0) exit(1);
        if (r % 2 == 0) {
          sp.push_back(run_spdlog(s, d, ovh, rate));
          cl.push_back(run_capline(s, d, ovh, rate));
        } else {
          cl.push_back(run_capline(s, d, ovh, rate));
          sp.push_back(run_spdlog(s, d, ovh, rate));
        }
        if (system(rm.c_str()) != 0) exit(1);
      };
      phase(0, sp_t, cl_t);
      phase(s.rate, sp_l, cl_l);
    }
    auto med = [](std::vector<Result> v, double Result::*f) {
      std::sort(v.begin(), v.end(), [f](const Result& a, const Result& b) { return a.*f < b.*f; });
      return v[v.size() / 2].*f;
    };
    long dropped = 0;
    for (auto& r : cl_l) dropped += r.refused;
    printf("%s:\n", s.name);
    printf("  sustained (%ld records, caller never paced): spdlog %.0f rec/s, capline %.0f rec/s -> %.2fx\n",
           s.records, med(sp_t, &Result::rps), med(cl_t, &Result::rps), med(cl_t, &Result::rps) / med(sp_t, &Result::rps));
    printf("  caller latency at %.0f req/s (%ld requests):\n", s.rate, s.paced);
    printf("    spdlog : p50 %8.0f ns  p99 %8.0f ns  p99.9 %8.0f ns\n", med(sp_l, &Result::p50), med(sp_l, &Result::p99),
           med(sp_l, &Result::p999));
    printf("    capline: p50 %8.0f ns  p99 %8.0f ns  p99.9 %8.0f ns  (dropped ring-full in all reps: %ld)\n",
           med(cl_l, &Result::p50), med(cl_l, &Result::p99), med(cl_l, &Result::p999), dropped);
    printf("    p99.9 %.1fx lower, p99 %.1fx lower, p50 %.1fx lower\n",
           med(sp_l, &Result::p999) / std::max(1.0, med(cl_l, &Result::p999)),
           med(sp_l, &Result::p99) / std::max(1.0, med(cl_l, &Result::p99)),
           med(sp_l, &Result::p50) / std::max(1.0, med(cl_l, &Result::p50)));
  }
  return 0;
}
