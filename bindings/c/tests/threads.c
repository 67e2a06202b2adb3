/* 8 pthreads x N captures on one engine, then flush, stats and free.
 * Usage: threads SPOOL DEST [THREADS [PER_THREAD]]
 * Prints "calls C kept K written W dropped D"; exits 1 if the counts do not
 * add up (every call in exactly one outcome; every kept record written). */
#include <capline.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static capline_engine *engine;
static long per_thread = 100000;

struct tally {
  int id;
  long outcomes[16];
  long errors;
};

static void *worker(void *arg) {
  struct tally *t = arg;
  char request[256], response[32], id[32];
  for (long i = 0; i < per_thread; i++) {
    int rlen = snprintf(request, sizeof request, "%d,%ld,0.25,17,3.5,1,0,0,1,42.0,7,0,1\n", t->id, i);
    int slen = snprintf(response, sizeof response, "0.%06ld", (i * 7919) % 1000000);
    int ilen = snprintf(id, sizeof id, "t%d-%ld", t->id, i);
    capline_event ev = {0};
    ev.request = (const uint8_t *)request;
    ev.request_len = (size_t)rlen;
    ev.request_content_type = "text/csv";
    ev.request_content_type_len = strlen("text/csv");
    ev.response = (const uint8_t *)response;
    ev.response_len = (size_t)slen;
    ev.response_content_type = "text/csv";
    ev.response_content_type_len = strlen("text/csv");
    ev.inference_id = id;
    ev.inference_id_len = (size_t)ilen;
    int32_t rc = capline_capture(engine, &ev);
    if (rc < 0 || rc >= 16) {
      t->errors++;
    } else {
      t->outcomes[rc]++;
      if (rc == CAPLINE_DROPPED_RING_FULL) sched_yield();
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s SPOOL DEST [THREADS [PER_THREAD]]\n", argv[0]);
    return 2;
  }
  int threads = argc > 3 ? atoi(argv[3]) : 8;
  if (argc > 4) per_thread = atol(argv[4]);
  char config[2048];
  snprintf(config, sizeof config,
           "{\"EndpointName\":\"c-threads\",\"DataCaptureConfig\":{\"InitialSamplingPercentage\":100,"
           "\"DestinationS3Uri\":\"file://%s\",\"CaptureOptions\":[{\"CaptureMode\":\"InputAndOutput\"}],"
           "\"CaptureContentTypeHeader\":{\"CsvContentTypes\":[\"text/csv\"]}},"
           "\"Engine\":{\"SpoolDir\":\"%s\",\"SegmentMaxBytes\":8388608}}",
           argv[2], argv[1]);
  char err[512];
  if (capline_engine_new(config, &engine) != CAPLINE_OK) {
    capline_last_error(err, sizeof err);
    fprintf(stderr, "capline_engine_new: %s\n", err);
    return 1;
  }
  pthread_t tid[64];
  struct tally tallies[64];
  memset(tallies, 0, sizeof tallies);
  if (threads > 64) threads = 64;
  for (int i = 0; i < threads; i++) {
    tallies[i].id = i;
    pthread_create(&tid[i], NULL, worker, &tallies[i]);
  }
  long outcomes[16] = {0}, errors = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(tid[i], NULL);
    for (int k = 0; k < 16; k++) outcomes[k] += tallies[i].outcomes[k];
    errors += tallies[i].errors;
  }
  if (capline_flush(engine, 60000) != CAPLINE_OK || capline_flush(engine, 60000) != CAPLINE_OK) {
    capline_last_error(err, sizeof err);
    fprintf(stderr, "capline_flush: %s\n", err);
    return 1;
  }
  capline_stats_t s;
  if (capline_stats(engine, &s) != CAPLINE_OK) return 1;
  if (capline_engine_free(engine, 30000) != CAPLINE_OK) {
    capline_last_error(err, sizeof err);
    fprintf(stderr, "capline_engine_free: %s\n", err);
    return 1;
  }
  long calls = (long)threads * per_thread;
  long dropped = outcomes[CAPLINE_DROPPED_RING_FULL];
  uint64_t stat_calls = s.kept + s.sampled_out + s.dropped_disabled + s.dropped_watermark +
                        s.dropped_spool_full + s.dropped_ring_full + s.dropped_too_large +
                        s.rejected_inference_id + s.rejected_content_type + s.rejected_time;
  printf("calls %ld kept %ld written %llu dropped %ld\n", calls, outcomes[CAPLINE_KEPT],
         (unsigned long long)s.records_written, dropped);
  int ok = errors == 0 && stat_calls == (uint64_t)calls && s.kept == (uint64_t)outcomes[CAPLINE_KEPT] &&
           s.dropped_ring_full == (uint64_t)dropped && s.records_written == s.kept && s.dropped_unparsable == 0 && s.dropped_io_error == 0 &&
           outcomes[CAPLINE_KEPT] + dropped == calls;
  if (!ok) {
    fprintf(stderr, "counts do not add up: errors %ld, stats calls %llu, stats kept %llu\n", errors,
            (unsigned long long)stat_calls, (unsigned long long)s.kept);
    return 1;
  }
  return 0;
}
