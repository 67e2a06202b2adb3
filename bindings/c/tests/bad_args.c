/* Every kind of bad argument gets its documented code and an explanation
 * from capline_last_error; the process never aborts.
 * Usage: bad_args SPOOL DEST. Exits 1 on the first mismatch. */
#include <capline.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void expect(const char *what, int32_t got, int32_t want, const char *mention) {
  char msg[512] = {0};
  size_t n = capline_last_error(msg, sizeof msg);
  int ok = got == want && (mention == NULL || (n > 0 && strstr(msg, mention) != NULL));
  printf("%-4s %-48s -> %3d (want %3d)  %s\n", ok ? "ok" : "FAIL", what, got, want,
         mention ? msg : "");
  if (!ok) failures++;
}

/* A writable byte, for calls that must fail before touching their buffer. */
static char *small_buf_for_length(void) {
  static char one[1];
  return one;
}

static capline_event csv_event(const char *req, const char *resp) {
  capline_event ev = {0};
  ev.request = (const uint8_t *)req;
  ev.request_len = strlen(req);
  ev.request_content_type = "text/csv";
  ev.request_content_type_len = 8;
  ev.response = (const uint8_t *)resp;
  ev.response_len = strlen(resp);
  ev.response_content_type = "text/csv";
  ev.response_content_type_len = 8;
  return ev;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  char config[2048];
  snprintf(config, sizeof config,
           "{\"EndpointName\":\"c-bad\",\"DataCaptureConfig\":{\"InitialSamplingPercentage\":100,"
           "\"DestinationS3Uri\":\"file://%s\",\"CaptureOptions\":[{\"CaptureMode\":\"InputAndOutput\"}]},"
           "\"Engine\":{\"SpoolDir\":\"%s\"}}",
           argv[2], argv[1]);
  capline_engine *e = (capline_engine *)1;

  /* Engine creation. */
  expect("engine_new(NULL config)", capline_engine_new(NULL, &e), CAPLINE_ERR_NULL, "config_json");
  expect("  ... leaves *out NULL", e == NULL ? 0 : 1, 0, NULL);
  expect("engine_new(config, NULL out)", capline_engine_new(config, NULL), CAPLINE_ERR_NULL, "out");
  expect("engine_new(garbage)", capline_engine_new("{not json", &e), CAPLINE_ERR_CONFIG, "valid JSON");
  expect("engine_new(bad field)",
         capline_engine_new("{\"EndpointName\":\"x\",\"DataCaptureConfig\":{\"InitialSamplingPercentage\":101,"
                            "\"DestinationS3Uri\":\"file:///tmp/x\",\"CaptureOptions\":[{\"CaptureMode\":\"Input\"}]},"
                            "\"Engine\":{\"SpoolDir\":\"/tmp/x\"}}",
                            &e),
         CAPLINE_ERR_CONFIG, "InitialSamplingPercentage");
  expect("engine_new(invalid UTF-8)", capline_engine_new("{\"EndpointName\":\"\xff\"}", &e), CAPLINE_ERR_UTF8,
         "config_json");
  expect("engine_new(valid)", capline_engine_new(config, &e), CAPLINE_OK, NULL);
  if (e == NULL) return 1;

  /* Capture. */
  capline_event ev = csv_event("1,2,3", "0.5");
  expect("capture(NULL engine)", capline_capture(NULL, &ev), CAPLINE_ERR_NULL, "engine");
  expect("capture(NULL event)", capline_capture(e, NULL), CAPLINE_ERR_NULL, "event");
  _Alignas(capline_event) char raw[sizeof(capline_event) + 8];
  memcpy(raw + 1, &ev, sizeof ev);
  expect("capture(misaligned event)", capline_capture(e, (const capline_event *)(raw + 1)),
         CAPLINE_ERR_MISALIGNED, "aligned");
  capline_event bad = ev;
  bad.request = NULL;
  expect("capture(NULL request, length 5)", capline_capture(e, &bad), CAPLINE_ERR_NULL, "event->request");
  bad = ev;
  bad.response = NULL;
  bad.response_len = 3;
  expect("capture(NULL response, length 3)", capline_capture(e, &bad), CAPLINE_ERR_NULL, "event->response");
  bad = ev;
  bad.request_len = SIZE_MAX;
  expect("capture(length SIZE_MAX)", capline_capture(e, &bad), CAPLINE_ERR_LENGTH, "PTRDIFF_MAX");
  bad = ev;
  bad.request_content_type = "text/\xff";
  bad.request_content_type_len = 6;
  expect("capture(content type not UTF-8)", capline_capture(e, &bad), CAPLINE_ERR_UTF8,
         "request_content_type");
  bad = ev;
  bad.inference_id = "id\xc3";
  bad.inference_id_len = 3;
  expect("capture(inference id not UTF-8)", capline_capture(e, &bad), CAPLINE_ERR_UTF8, "inference_id");
  bad = ev;
  bad.inference_id = "has\ttab";
  bad.inference_id_len = 7;
  expect("capture(inference id with a tab)", capline_capture(e, &bad), CAPLINE_REJECTED_INFERENCE_ID, NULL);
  bad = ev;
  bad.time_unix_ms = -5000;
  expect("capture(time before 1970)", capline_capture(e, &bad), CAPLINE_REJECTED_TIME, NULL);
  capline_event empty = {0};
  expect("capture(all empty, zero-initialized)", capline_capture(e, &empty), CAPLINE_KEPT, NULL);
  for (int i = 0; i < 100; i++) expect("capture(valid)", capline_capture(e, &ev), CAPLINE_KEPT, NULL);

  /* Control. */
  expect("set_sampling_percentage(150)", capline_set_sampling_percentage(e, 150.0), CAPLINE_ERR_ARGUMENT,
         "0 to 100");
  expect("set_sampling_percentage(NaN)", capline_set_sampling_percentage(e, NAN), CAPLINE_ERR_ARGUMENT, NULL);
  expect("set_sampling_percentage(NULL engine)", capline_set_sampling_percentage(NULL, 5), CAPLINE_ERR_NULL,
         "engine");
  expect("set_enabled(NULL engine)", capline_set_enabled(NULL, false), CAPLINE_ERR_NULL, "engine");
  expect("flush(NULL engine)", capline_flush(NULL, 10), CAPLINE_ERR_NULL, "engine");
  expect("flush", capline_flush(e, 10000), CAPLINE_OK, NULL);
  expect("flush again (double flush)", capline_flush(e, 10000), CAPLINE_OK, NULL);
  expect("stats(engine, NULL)", capline_stats(e, NULL), CAPLINE_ERR_NULL, "out");
  capline_stats_t s;
  expect("stats", capline_stats(e, &s), CAPLINE_OK, NULL);
  expect("  ... kept 101", s.kept == 101 ? 0 : 1, 0, NULL);
  expect("  ... rejected_inference_id 1", s.rejected_inference_id == 1 ? 0 : 1, 0, NULL);
  expect("  ... rejected_time 1", s.rejected_time == 1 ? 0 : 1, 0, NULL);

  /* Stats as Prometheus text: the length first, then the text. */
  size_t needed = 0;
  expect("stats_prometheus(NULL engine)", capline_stats_prometheus(NULL, NULL, 0, &needed), CAPLINE_ERR_NULL,
         "engine");
  expect("stats_prometheus(NULL buf, len 10)", capline_stats_prometheus(e, NULL, 10, &needed),
         CAPLINE_ERR_NULL, "buf");
  expect("stats_prometheus(SIZE_MAX)", capline_stats_prometheus(e, small_buf_for_length(), SIZE_MAX, NULL),
         CAPLINE_ERR_LENGTH, "PTRDIFF_MAX");
  expect("stats_prometheus length", capline_stats_prometheus(e, NULL, 0, &needed), CAPLINE_OK, NULL);
  char *text = malloc(needed + 1);
  size_t again = 0;
  expect("stats_prometheus", capline_stats_prometheus(e, text, needed + 1, &again), CAPLINE_OK, NULL);
  expect("  ... whole, NUL-terminated", (again == needed && strlen(text) == needed) ? 0 : 1, 0, NULL);
  expect("  ... capline_kept_total 101", strstr(text, "\ncapline_kept_total 101\n") ? 0 : 1, 0, NULL);
  expect("  ... rejected by reason", strstr(text, "capline_rejected_total{reason=\"time\"} 1\n") ? 0 : 1, 0,
         NULL);
  free(text);
  char cut[16];
  expect("stats_prometheus truncates", capline_stats_prometheus(e, cut, sizeof cut, NULL), CAPLINE_OK, NULL);
  expect("  ... and terminates", strlen(cut) == 15 ? 0 : 1, 0, NULL);

  /* Last error: length, truncation, NUL. */
  capline_capture(NULL, &ev);
  size_t full = capline_last_error(NULL, 0);
  char small[8];
  memset(small, 'x', sizeof small);
  size_t n = capline_last_error(small, sizeof small);
  expect("last_error truncates and terminates", (n == full && full > 7 && small[7] == '\0') ? 0 : 1, 0, NULL);
  const char *v = capline_version();
  expect("version is a string", (v != NULL && strlen(v) >= 5) ? 0 : 1, 0, NULL);

  /* Free with records pending (kept, not yet flushed). */
  for (int i = 0; i < 50; i++) capline_capture(e, &ev);
  expect("engine_free with pending records", capline_engine_free(e, 10000), CAPLINE_OK, NULL);
  expect("engine_free(NULL)", capline_engine_free(NULL, 0), CAPLINE_ERR_NULL, "engine");

  printf("%s: %d failure(s); version %s\n", failures ? "FAILED" : "bad_args ok", failures, v);
  return failures ? 1 : 0;
}
