/*
 * A host thread driving --inflight exchanges at once with non-blocking runs,
 * the way an event-loop proxy does: start a phase, and when it comes back
 * pending, wait on the dispatcher's fd and let pe_dispatcher_dispatch()
 * resume it. Each exchange goes through the four phases, then starts over.
 */
#include <poll.h>
#include <stdlib.h>

#include "bh.h"

typedef struct slot {
  bh_thread *t;
  pe_dispatcher *d;
  pe_exchange *ex;
  int phase;         /* next phase to run; PE_PHASE_COUNT when done */
  uint64_t start_ns; /* when this request began */
  bool busy;         /* a request is under way */
} slot;

typedef struct driver {
  bh_thread *t;
  slot *slots;
  int count;
  bool measuring;    /* record latencies and results */
  bool stop;         /* start no new request */
  uint64_t deadline; /* end of the current part */
  uint64_t started;  /* requests begun in the measured part */
} driver;

static _Thread_local driver *current;

static void advance(slot *s);

static void phase_done(pe_exchange *ex, int rc, void *user_data) {
  (void)ex;
  slot *s = user_data;
  if (rc != PE_OK) {
    bh_record_failure(s->t, "async run completed with %s", pe_strerror(rc));
    s->t->error = 1;
  }
  s->phase = s->phase == PE_PHASE_RESPONSE_HEADERS ? PE_PHASE_COUNT : s->phase + 1;
  advance(s);
}

static void begin(slot *s) {
  driver *dr = current;
  if (dr->stop || s->t->error ||
      (dr->measuring && s->t->cfg->iterations && dr->started >= s->t->cfg->iterations)) {
    s->busy = false;
    return;
  }
  if (bh_fill_request(s->t, s->ex) != PE_OK) {
    bh_record_failure(s->t, "filling the request failed");
    s->t->error = 1;
    s->busy = false;
    return;
  }
  if (dr->measuring)
    dr->started++;
  s->busy = true;
  s->phase = 0;
  s->start_ns = bh_now_ns();
}

/* Runs phases until one is pending or the request is complete. */
static void advance(slot *s) {
  driver *dr = current;
  while (s->busy) {
    if (s->phase < PE_PHASE_COUNT && pe_exchange_verdict(s->ex) == PE_VERDICT_CONTINUE) {
      if (s->phase == PE_PHASE_RESPONSE_HEADERS && bh_play_upstream(s->ex) != PE_OK) {
        bh_record_failure(s->t, "playing the upstream failed");
        s->t->error = 1;
        s->busy = false;
        return;
      }
      /* The response phases run as one, as in the blocking driver. */
      pe_phase last =
          s->phase == PE_PHASE_RESPONSE_HEADERS ? PE_PHASE_RESPONSE_BODY : (pe_phase)s->phase;
      int rc = pe_chain_run_phases_async(s->t->chain, s->ex, (pe_phase)s->phase, last, s->d,
                                         phase_done, s);
      if (rc == PE_PENDING)
        return;
      if (rc == PE_ERR_BUSY)
        continue; /* the in-flight cap: retry (counted as latency, not failure) */
      if (rc != PE_OK) {
        bh_record_failure(s->t, "pe_chain_run_async: %s", pe_strerror(rc));
        s->t->error = 1;
        s->busy = false;
        return;
      }
      s->phase = last + 1;
      continue;
    }
    uint64_t end = bh_now_ns();
    if (dr->measuring) {
      bh_hist_record(&s->t->hist, end - s->start_ns);
      bh_check_result(s->t, s->ex);
      s->t->requests++;
    }
    if (end >= dr->deadline)
      dr->stop = true;
    begin(s);
  }
}

/* Runs one part (warm-up or measured) until its deadline, then drains. */
static void run_part(driver *dr, double seconds, bool measuring) {
  dr->measuring = measuring;
  dr->stop = false;
  dr->started = 0;
  dr->deadline = bh_now_ns() + (uint64_t)(seconds * 1e9);
  if (measuring && dr->t->cfg->iterations)
    dr->deadline = UINT64_MAX;
  for (int i = 0; i < dr->count; i++) {
    begin(&dr->slots[i]);
    advance(&dr->slots[i]);
  }
  struct pollfd pfd = {.fd = pe_dispatcher_fd(dr->slots[0].d), .events = POLLIN};
  for (;;) {
    bool any = false;
    for (int i = 0; i < dr->count; i++)
      any |= dr->slots[i].busy;
    if (!any)
      break;
    if (poll(&pfd, 1, 1000) < 0)
      continue;
    pe_dispatcher_dispatch(dr->slots[0].d);
  }
}

void *bh_async_thread(void *arg) {
  bh_thread *t = arg;
  int k = t->cfg->inflight;
  driver dr = {.t = t, .count = k};
  pe_dispatcher *d = NULL;
  dr.slots = calloc((size_t)k, sizeof *dr.slots);
  if (!dr.slots || pe_dispatcher_new(&d, t->engine) != PE_OK)
    t->error = 1;
  for (int i = 0; !t->error && i < k; i++) {
    dr.slots[i] = (slot){.t = t, .d = d};
    if (pe_exchange_new(&dr.slots[i].ex, t->engine) != PE_OK)
      t->error = 1;
  }
  current = &dr;
  if (!t->error)
    run_part(&dr, t->cfg->warmup_s, false);
  pthread_barrier_wait(t->ready);
  pthread_barrier_wait(t->go);
  if (!t->error)
    run_part(&dr, t->cfg->duration_s, true);
  pe_dispatcher_free(d);
  for (int i = 0; dr.slots && i < k; i++)
    pe_exchange_free(dr.slots[i].ex);
  free(dr.slots);
  return NULL;
}
