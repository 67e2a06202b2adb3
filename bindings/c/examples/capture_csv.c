/* A server loop that captures each CSV request/response pair with capline.
 *
 * Build (after scripts/c-install.sh PREFIX, see docs/C-API.md):
 *   cc capture_csv.c $(pkg-config --cflags --libs capline) -o capture_csv
 * Run:
 *   ./capture_csv /tmp/capline-spool /tmp/capline-capture
 * then: capline cat --pretty /tmp/capline-capture */
#include <capline.h>

#include <stdio.h>
#include <string.h>

/* Stand-in for the model: a score for a CSV row. */
static double predict(const char *row) { return (double)(strlen(row) % 100) / 100.0; }

int main(int argc, char **argv) {
  const char *spool = argc > 1 ? argv[1] : "/tmp/capline-spool";
  const char *dest = argc > 2 ? argv[2] : "/tmp/capline-capture";
  char config[1024];
  snprintf(config, sizeof config,
           "{\"EndpointName\":\"churn\",\"DataCaptureConfig\":{"
           "\"InitialSamplingPercentage\":100,\"DestinationS3Uri\":\"file://%s\","
           "\"CaptureOptions\":[{\"CaptureMode\":\"Input\"},{\"CaptureMode\":\"Output\"}],"
           "\"CaptureContentTypeHeader\":{\"CsvContentTypes\":[\"text/csv\"]}},"
           "\"Engine\":{\"SpoolDir\":\"%s\"}}",
           dest, spool);

  capline_engine *engine = NULL;
  if (capline_engine_new(config, &engine) != CAPLINE_OK) {
    char err[512];
    capline_last_error(err, sizeof err);
    fprintf(stderr, "capline: %s\n", err);
    return 1;
  }

  const char *rows[] = {"186,0,137.8,97,187.7,118,146.4,85,8.7,6,1\n",
                        "132,0,253.9,92,179.4,112,193.6,79,11.5,4,0\n",
                        "112,0,189.7,100,247.3,90,167.2,122,12.0,3,2\n"};
  int kept = 0;
  for (int i = 0; i < 3; i++) {
    /* ... the server handles the request and produces a response ... */
    char response[32];
    int n = snprintf(response, sizeof response, "%.4f", predict(rows[i]));
    char id[16];
    int id_len = snprintf(id, sizeof id, "req-%d", i);

    /* Then hands both to capline: never blocks, copies only if kept. */
    capline_event ev = {0};
    ev.request = (const uint8_t *)rows[i];
    ev.request_len = strlen(rows[i]);
    ev.request_content_type = "text/csv";
    ev.request_content_type_len = strlen("text/csv");
    ev.response = (const uint8_t *)response;
    ev.response_len = (size_t)n;
    ev.response_content_type = "text/csv; charset=utf-8";
    ev.response_content_type_len = strlen("text/csv; charset=utf-8");
    ev.inference_id = id;
    ev.inference_id_len = (size_t)id_len;
    kept += capline_capture(engine, &ev) == CAPLINE_KEPT;
  }

  /* At server shutdown: deliver within 5 s, the rest at the next start. */
  int rc = capline_engine_free(engine, 5000);
  printf("captured %d of 3 pairs into %s (capline %s)\n", kept, dest, capline_version());
  return rc == CAPLINE_OK ? 0 : 1;
}
