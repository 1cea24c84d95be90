/*
 * The compiled impairment core: the netem-semantics decision model of
 * lab/impairment/model.py and the TUN-to-TUN forwarding loop, in C.
 *
 * The Python model (model.py) is the reference; this file replicates it bit for bit
 * (tests/test_core_differential.py feeds both the same packets and compares):
 *
 *   - random streams: numpy's SeedSequence (spawn key (direction, kind[, flow])) seeding
 *     PCG64 (XSL-RR 128/64), numpy's double conversion (x >> 11) * 2**-53 and its
 *     buffered 32-bit draws (low half first) for Generator.integers(0, 2**32);
 *   - netem's correlation, computed exactly as model.correlate does it per block of
 *     BLOCK_SIZE draws and per chunk (rho**-k from libm's pow, a running sum);
 *   - the order of decisions, the queue (a heap or a FIFO, as the model picks), rate,
 *     keep_order and duplicates exactly as DirectionModel.decide.
 *
 * The forwarding loop (Engine) holds no Python object per packet. Each direction is a
 * lane of two threads: the reader reads its TUN fd, judges each packet (the model),
 * records it and hands held packets to the writer, which keeps them on a binary heap
 * of departures and writes each at its time. Why two threads per direction:
 *   - both cores: the two directions (data and ACKs) forward in parallel;
 *   - lateness: a write into a TUN runs the receiving stack (about 2 us a packet here),
 *     a read costs well under 1 us. When one thread does both, packets that arrive
 *     while it writes a burst queue up, are read back to back, get departure times
 *     0.5 us apart and leave 2 us apart: later and later along the burst (the old
 *     single loop: p50 64 us, p99 0.3-2.3 ms at 50k pps). With its own reader, a
 *     packet is stamped when it arrives and the writer only writes.
 * The writer sleeps to (deadline - spin_ns) on a futex with an absolute timeout (the
 * hrtimer, 1 ns slack, that clock_nanosleep(TIMER_ABSTIME) uses) and spins the rest,
 * within a CPU budget; see writer_main. The record lives in fixed chunks per lane,
 * merged by arrival time into the .npz ground truth once, at the end. Python's thread
 * waits with the GIL released and returns only when a signal arrives (the wake fd) or
 * every lane has stopped.
 *
 * Build: a setuptools extension (setup.py), compiled with -ffp-contract=off so that
 * no multiply-add is fused and the floating-point steps round as numpy's do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

/* a CPython callback's parameter this function has no use for */
#define UNUSED __attribute__((unused))

#define BLOCK_SIZE 65536
#define TABLE_SIZE 4096
#define HEADER_BYTES 64
#define READ_BATCH 64
#define MAX_PACKET 65536

#define FORWARDED 0
#define DROPPED_LOSS 1
#define DROPPED_QUEUE 2

#define FLAG_DUPLICATED 1
#define FLAG_CORRUPTED 2
#define FLAG_REORDERED 4
#define FLAG_PENDING_AT_STOP 8

#define KIND_LOSS 0
#define KIND_DUPLICATE 1
#define KIND_CORRUPT 2
#define KIND_CORRUPT_BIT 3
#define KIND_DELAY 4
#define KIND_REORDER 5

#define LOSS_NONE 0
#define LOSS_RANDOM 1
#define LOSS_GEMODEL 2

/* ---------------------------------------------------------------- PCG64 ------ */

typedef __uint128_t u128;

#define PCG_MULT ((((u128)0x2360ED051FC65DA4ULL) << 64) | 0x4385DF649FCCF645ULL)

typedef struct {
    u128 state;
    u128 inc;
    int has32;
    uint32_t u32;
} pcg64_t;

static inline uint64_t pcg_next(pcg64_t *g) {
    g->state = g->state * PCG_MULT + g->inc;
    uint64_t x = ((uint64_t)(g->state >> 64)) ^ (uint64_t)g->state;
    unsigned rot = (unsigned)(g->state >> 122);
    return (x >> rot) | (x << ((-rot) & 63));
}

static inline double pcg_double(pcg64_t *g) {
    return (double)(pcg_next(g) >> 11) * (1.0 / 9007199254740992.0);
}

static inline uint32_t pcg_u32(pcg64_t *g) {
    if (g->has32) {
        g->has32 = 0;
        return g->u32;
    }
    uint64_t n = pcg_next(g);
    g->has32 = 1;
    g->u32 = (uint32_t)(n >> 32);
    return (uint32_t)(n & 0xFFFFFFFFu);
}

/* numpy's SeedSequence (pool of 4 uint32) -> generate_state(4, uint64) -> PCG64. */
#define SS_POOL 4
#define SS_INIT_A 0x43b0d7e5u
#define SS_MULT_A 0x931e8875u
#define SS_INIT_B 0x8b51f9ddu
#define SS_MULT_B 0x58f38dedu
#define SS_MIX_L 0xca01f9ddu
#define SS_MIX_R 0x4973f715u

static inline uint32_t ss_hashmix(uint32_t value, uint32_t *hash_const) {
    value ^= *hash_const;
    *hash_const *= SS_MULT_A;
    value *= *hash_const;
    value ^= value >> 16;
    return value;
}

static inline uint32_t ss_mix(uint32_t x, uint32_t y) {
    uint32_t r = SS_MIX_L * x - SS_MIX_R * y;
    r ^= r >> 16;
    return r;
}

/* entropy: the seed's uint32 words (little-endian, [0] for 0); spawn: the key words. */
static void seed_pcg(pcg64_t *g, const uint32_t *entropy, int n_entropy, const uint32_t *spawn,
                     int n_spawn) {
    uint32_t words[32];
    int n = 0;
    for (int i = 0; i < n_entropy && n < 24; i++) words[n++] = entropy[i];
    if (n_spawn > 0)
        while (n < SS_POOL) words[n++] = 0;
    for (int i = 0; i < n_spawn && n < 32; i++) words[n++] = spawn[i];

    uint32_t pool[SS_POOL];
    uint32_t hc = SS_INIT_A;
    for (int i = 0; i < SS_POOL; i++) pool[i] = ss_hashmix(i < n ? words[i] : 0, &hc);
    for (int src = 0; src < SS_POOL; src++)
        for (int dst = 0; dst < SS_POOL; dst++)
            if (src != dst) pool[dst] = ss_mix(pool[dst], ss_hashmix(pool[src], &hc));
    for (int src = SS_POOL; src < n; src++)
        for (int dst = 0; dst < SS_POOL; dst++)
            pool[dst] = ss_mix(pool[dst], ss_hashmix(words[src], &hc));

    uint32_t out[8];
    uint32_t hb = SS_INIT_B;
    for (int i = 0; i < 8; i++) {
        uint32_t v = pool[i % SS_POOL];
        v ^= hb;
        hb *= SS_MULT_B;
        v *= hb;
        v ^= v >> 16;
        out[i] = v;
    }
    uint64_t s[4];
    for (int i = 0; i < 4; i++) s[i] = (uint64_t)out[2 * i] | ((uint64_t)out[2 * i + 1] << 32);
    u128 initstate = ((u128)s[0] << 64) | s[1];
    u128 initseq = ((u128)s[2] << 64) | s[3];
    g->state = 0;
    g->inc = (initseq << 1) | 1;
    g->state = g->state * PCG_MULT + g->inc;
    g->state += initstate;
    g->state = g->state * PCG_MULT + g->inc;
    g->has32 = 0;
    g->u32 = 0;
}

/* ------------------------------------------------- uniforms (model._Uniforms) ---- */

typedef struct {
    pcg64_t g;
    double rho;
    double last;       /* y of the previous draw (the seed draw at first) */
    double chunk_last; /* y before the current chunk */
    double sum;        /* running sum of rho**-k * u over the chunk */
    int64_t chunk;     /* chunk length, as model.correlate computes it */
    int64_t k;         /* draws so far in this chunk */
    int64_t pos;       /* draws so far in this block */
} ustream_t;

static void ustream_init(ustream_t *s, const uint32_t *entropy, int n_entropy,
                         const uint32_t *spawn, int n_spawn, double rho, int64_t chunk) {
    memset(s, 0, sizeof(*s));
    seed_pcg(&s->g, entropy, n_entropy, spawn, n_spawn);
    s->rho = rho;
    s->chunk = chunk < 1 ? 1 : chunk;
    s->pos = BLOCK_SIZE;
    if (rho > 0) s->last = pcg_double(&s->g); /* netem seeds `last` with one draw */
}

static inline double ustream_next(ustream_t *s) {
    double u = pcg_double(&s->g);
    if (s->rho <= 0.0) return u;
    if (s->rho >= 1.0) return s->last;
    if (s->pos == BLOCK_SIZE) { /* a new block restarts the chunking */
        s->pos = 0;
        s->k = s->chunk;
    }
    if (s->k == s->chunk) {
        s->chunk_last = s->last;
        s->sum = 0.0;
        s->k = 0;
    }
    s->k++;
    s->pos++;
    double grow = pow(s->rho, -(double)s->k);
    s->sum += grow * u;
    double y = (s->chunk_last + (1.0 - s->rho) * s->sum) / grow;
    s->last = y;
    return y;
}

/* ------------------------------------------------------------ the model ------ */

typedef struct {
    int64_t key; /* -1: empty slot */
    ustream_t loss, dup, corrupt, reorder, delay;
    pcg64_t bits;
    int ge_bad;
    int64_t counter;
} flow_t;

typedef struct {
    int64_t fate;
    int64_t send_at;
    int64_t dup_at;
    int64_t bit;
    int reordered;
} verdict_t;

typedef struct {
    PyObject_HEAD
    /* parameters */
    int clean;
    int direction_index;
    uint32_t seed_words[24];
    int n_seed_words;
    int loss_mode;
    double p_loss, ge_p, ge_r, ge_loss_bad, ge_loss_good;
    double rho_loss, rho_dup, rho_corrupt, rho_reorder, rho_delay;
    int64_t chunk_loss, chunk_dup, chunk_corrupt, chunk_reorder, chunk_delay;
    int has_dup, has_corrupt, marks;
    double p_dup, p_corrupt, p_reorder;
    int64_t gap;
    int64_t delay_ns, jitter_ns;
    int jittered, uniform;
    int64_t table_ns[TABLE_SIZE];
    int64_t rate_bps;
    int keep_order, loss_only, tail, heap_mode;
    int64_t limit;
    /* state */
    int64_t last_send, link_free;
    int64_t *pending; /* heap (heap_mode) or ring of capacity limit + 1 */
    int64_t p_head, p_count, p_cap;
    flow_t **flows; /* open addressing on key */
    int64_t f_cap, f_count;
} ModelObject;

static flow_t *new_flow(ModelObject *m, int64_t key) {
    flow_t *f = calloc(1, sizeof(flow_t));
    if (!f) return NULL;
    f->key = key;
    uint32_t spawn[3];
    int n_spawn = key == 0 ? 2 : 3;
    spawn[0] = (uint32_t)m->direction_index;
    spawn[2] = (uint32_t)key;
#define SEED(stream, kind, rho, chunk)                                                  \
    do {                                                                                \
        spawn[1] = kind;                                                                \
        ustream_init(&f->stream, m->seed_words, m->n_seed_words, spawn, n_spawn, rho, \
                     chunk);                                                            \
    } while (0)
    if (m->loss_mode == LOSS_GEMODEL)
        SEED(loss, KIND_LOSS, 0.0, 1);
    else if (m->loss_mode == LOSS_RANDOM)
        SEED(loss, KIND_LOSS, m->rho_loss, m->chunk_loss);
    if (m->has_dup) SEED(dup, KIND_DUPLICATE, m->rho_dup, m->chunk_dup);
    if (m->has_corrupt) {
        SEED(corrupt, KIND_CORRUPT, m->rho_corrupt, m->chunk_corrupt);
        spawn[1] = KIND_CORRUPT_BIT;
        seed_pcg(&f->bits, m->seed_words, m->n_seed_words, spawn, n_spawn);
    }
    if (m->gap) SEED(reorder, KIND_REORDER, m->rho_reorder, m->chunk_reorder);
    if (m->jittered) SEED(delay, KIND_DELAY, m->rho_delay, m->chunk_delay);
#undef SEED
    return f;
}

static inline uint64_t hash_key(int64_t key) {
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

static int flows_insert(flow_t **table, int64_t cap, flow_t *f) {
    uint64_t i = hash_key(f->key) & (uint64_t)(cap - 1);
    while (table[i]) i = (i + 1) & (uint64_t)(cap - 1);
    table[i] = f;
    return 0;
}

static flow_t *get_flow(ModelObject *m, int64_t key) {
    uint64_t mask = (uint64_t)(m->f_cap - 1);
    uint64_t i = hash_key(key) & mask;
    while (m->flows[i]) {
        if (m->flows[i]->key == key) return m->flows[i];
        i = (i + 1) & mask;
    }
    if (2 * (m->f_count + 1) > m->f_cap) {
        int64_t cap = m->f_cap * 2;
        flow_t **table = calloc((size_t)cap, sizeof(flow_t *));
        if (!table) return NULL;
        for (int64_t j = 0; j < m->f_cap; j++)
            if (m->flows[j]) flows_insert(table, cap, m->flows[j]);
        free(m->flows);
        m->flows = table;
        m->f_cap = cap;
    }
    flow_t *f = new_flow(m, key);
    if (!f) return NULL;
    flows_insert(m->flows, m->f_cap, f);
    m->f_count++;
    return f;
}

/* pending departures: a min-heap or a FIFO, as the Python model picks */
static inline int64_t pending_front(ModelObject *m) {
    return m->heap_mode ? m->pending[0] : m->pending[m->p_head];
}

static inline void pending_pop(ModelObject *m) {
    if (!m->heap_mode) {
        m->p_head = (m->p_head + 1) % m->p_cap;
        m->p_count--;
        return;
    }
    int64_t *h = m->pending;
    int64_t n = --m->p_count;
    if (n == 0) return;
    int64_t v = h[n];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

static inline void pending_push(ModelObject *m, int64_t v) {
    if (!m->heap_mode) {
        m->pending[(m->p_head + m->p_count) % m->p_cap] = v;
        m->p_count++;
        return;
    }
    int64_t *h = m->pending;
    int64_t i = m->p_count++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static inline void pending_purge(ModelObject *m, int64_t now) {
    while (m->p_count && pending_front(m) <= now) pending_pop(m);
}

static inline int64_t draw_delay(ModelObject *m, flow_t *f) {
    double u = ustream_next(&f->delay);
    int64_t offset;
    if (m->uniform) {
        int64_t span = 2 * m->jitter_ns;
        int64_t step = (int64_t)(u * (double)span);
        if (step > span - 1) step = span - 1;
        offset = step - m->jitter_ns;
    } else {
        int64_t index = (int64_t)(u * (double)TABLE_SIZE);
        if (index > TABLE_SIZE - 1) index = TABLE_SIZE - 1;
        offset = m->table_ns[index];
    }
    int64_t d = m->delay_ns + offset;
    return d < 0 ? 0 : d;
}

/* DirectionModel.decide, step for step. Returns -1 on allocation failure. */
static int decide(ModelObject *m, int64_t now, int64_t wire_size, int64_t key, verdict_t *v) {
    v->fate = FORWARDED;
    v->send_at = now;
    v->dup_at = -1;
    v->bit = -1;
    v->reordered = 0;
    if (m->clean) return 0;
    flow_t *f = get_flow(m, key);
    if (!f) return -1;

    /* 1. loss */
    if (m->loss_mode) {
        if (m->loss_mode == LOSS_RANDOM) {
            if (ustream_next(&f->loss) < m->p_loss) {
                v->fate = DROPPED_LOSS;
                return 0;
            }
        } else if (f->ge_bad) {
            if (ustream_next(&f->loss) < m->ge_r) f->ge_bad = 0;
            if (ustream_next(&f->loss) < m->ge_loss_bad) {
                v->fate = DROPPED_LOSS;
                return 0;
            }
        } else {
            if (ustream_next(&f->loss) < m->ge_p) f->ge_bad = 1;
            if (ustream_next(&f->loss) < m->ge_loss_good) {
                v->fate = DROPPED_LOSS;
                return 0;
            }
        }
        if (m->loss_only) return 0;
    }

    /* 2. duplication, 3. corruption */
    int duplicate = 0;
    int64_t bit = -1;
    if (m->marks) {
        if (m->has_dup) duplicate = ustream_next(&f->dup) < m->p_dup;
        if (m->has_corrupt) {
            int hit = ustream_next(&f->corrupt) < m->p_corrupt;
            uint32_t index = pcg_u32(&f->bits);
            bit = hit ? (int64_t)index : -1;
        }
    }

    /* 4. queue limit */
    if (m->p_count >= m->limit) {
        pending_purge(m, now);
        if (m->p_count >= m->limit) {
            v->fate = DROPPED_QUEUE;
            return 0;
        }
    }

    /* 5. reorder */
    if (m->gap) {
        if (f->counter >= m->gap - 1 && ustream_next(&f->reorder) < m->p_reorder) {
            f->counter = 0;
            v->dup_at = duplicate ? now : -1;
            v->bit = bit;
            v->reordered = 1;
            return 0;
        }
        f->counter++;
    }

    /* 6. delay and jitter */
    int64_t send = now + (m->jittered ? draw_delay(m, f) : m->delay_ns);
    if (!m->tail) {
        if (send > now) pending_push(m, send);
        v->send_at = send;
        v->bit = bit;
        return 0;
    }

    /* 7. rate */
    int64_t duplicate_at = -1;
    if (m->rate_bps) {
        int64_t tx_ns = (int64_t)(((__int128)wire_size * 8000000000LL) / m->rate_bps);
        if (send < m->link_free) send = m->link_free;
        send += tx_ns;
        if (duplicate) {
            duplicate_at = send + tx_ns;
            m->link_free = duplicate_at;
        } else {
            m->link_free = send;
        }
    } else if (duplicate) {
        duplicate_at = send;
    }

    /* 8. keep_order */
    if (m->keep_order) {
        if (send < m->last_send) {
            send = m->last_send;
            if (duplicate_at >= 0 && duplicate_at < send) duplicate_at = send;
        }
        m->last_send = duplicate_at > send ? duplicate_at : send;
    }

    if (send > now) {
        pending_push(m, send);
        if (duplicate_at >= 0) {
            if (m->p_count >= m->limit) pending_purge(m, now);
            if (m->p_count < m->limit)
                pending_push(m, duplicate_at);
            else
                duplicate_at = -1;
        }
    }
    v->send_at = send;
    v->dup_at = duplicate_at;
    v->bit = bit;
    return 0;
}

static void Model_dealloc(ModelObject *m) {
    if (m->flows) {
        for (int64_t i = 0; i < m->f_cap; i++) free(m->flows[i]);
        free(m->flows);
    }
    free(m->pending);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

/* Model(config: dict): every value computed by lab.impairment.core from the params. */
static int get_double(PyObject *d, const char *name, double *out) {
    PyObject *v = PyDict_GetItemString(d, name);
    if (!v) {
        PyErr_Format(PyExc_KeyError, "core config lacks %s", name);
        return -1;
    }
    *out = PyFloat_AsDouble(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int get_int(PyObject *d, const char *name, int64_t *out) {
    PyObject *v = PyDict_GetItemString(d, name);
    if (!v) {
        PyErr_Format(PyExc_KeyError, "core config lacks %s", name);
        return -1;
    }
    *out = PyLong_AsLongLong(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int Model_init(ModelObject *m, PyObject *args, PyObject *kwds UNUSED) {
    PyObject *c;
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &c)) return -1;
    int64_t x;
#define I(name, field)                         \
    if (get_int(c, name, &x) < 0) return -1; \
    m->field = x;
#define D(name, field) \
    if (get_double(c, name, &m->field) < 0) return -1;
    I("clean", clean);
    I("direction_index", direction_index);
    I("loss_mode", loss_mode);
    D("p_loss", p_loss);
    D("ge_p", ge_p);
    D("ge_r", ge_r);
    D("ge_loss_bad", ge_loss_bad);
    D("ge_loss_good", ge_loss_good);
    D("rho_loss", rho_loss);
    D("rho_dup", rho_dup);
    D("rho_corrupt", rho_corrupt);
    D("rho_reorder", rho_reorder);
    D("rho_delay", rho_delay);
    I("chunk_loss", chunk_loss);
    I("chunk_dup", chunk_dup);
    I("chunk_corrupt", chunk_corrupt);
    I("chunk_reorder", chunk_reorder);
    I("chunk_delay", chunk_delay);
    I("has_dup", has_dup);
    I("has_corrupt", has_corrupt);
    I("marks", marks);
    D("p_dup", p_dup);
    D("p_corrupt", p_corrupt);
    D("p_reorder", p_reorder);
    I("gap", gap);
    I("delay_ns", delay_ns);
    I("jitter_ns", jitter_ns);
    I("jittered", jittered);
    I("uniform", uniform);
    I("rate_bps", rate_bps);
    I("keep_order", keep_order);
    I("loss_only", loss_only);
    I("tail", tail);
    I("heap_mode", heap_mode);
    I("limit", limit);
#undef I
#undef D
    PyObject *words = PyDict_GetItemString(c, "seed_words");
    PyObject *table = PyDict_GetItemString(c, "table_ns");
    if (!words || !PyTuple_Check(words) || PyTuple_GET_SIZE(words) < 1 ||
        PyTuple_GET_SIZE(words) > 24) {
        PyErr_SetString(PyExc_ValueError, "seed_words: a tuple of 1-24 uint32 words");
        return -1;
    }
    m->n_seed_words = (int)PyTuple_GET_SIZE(words);
    for (int i = 0; i < m->n_seed_words; i++) {
        m->seed_words[i] = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(words, i));
        if (PyErr_Occurred()) return -1;
    }
    if (!table || !PyTuple_Check(table) || PyTuple_GET_SIZE(table) != TABLE_SIZE) {
        PyErr_SetString(PyExc_ValueError, "table_ns: a tuple of 4096 ints");
        return -1;
    }
    for (int i = 0; i < TABLE_SIZE; i++) {
        m->table_ns[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(table, i));
        if (PyErr_Occurred()) return -1;
    }
    if (m->limit < 1) {
        PyErr_SetString(PyExc_ValueError, "limit must be >= 1");
        return -1;
    }
    free(m->pending);
    m->p_cap = m->limit + 2;
    m->pending = malloc((size_t)m->p_cap * sizeof(int64_t));
    m->p_head = m->p_count = 0;
    m->last_send = m->link_free = 0;
    if (m->flows) {
        for (int64_t i = 0; i < m->f_cap; i++) free(m->flows[i]);
        free(m->flows);
    }
    m->f_cap = 16;
    m->f_count = 0;
    m->flows = calloc((size_t)m->f_cap, sizeof(flow_t *));
    if (!m->pending || !m->flows) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *Model_decide(ModelObject *m, PyObject *args) {
    long long now, size, flow = 0;
    if (!PyArg_ParseTuple(args, "LL|L", &now, &size, &flow)) return NULL;
    verdict_t v;
    if (decide(m, now, size, flow, &v) < 0) return PyErr_NoMemory();
    return Py_BuildValue("(LLLLO)", (long long)v.fate, (long long)v.send_at,
                         (long long)v.dup_at, (long long)v.bit,
                         v.reordered ? Py_True : Py_False);
}

/* decide_many(t_in i64[], size i64[], flow i64[], fate u8[], send i64[], dup i64[],
 * bit i64[], reordered u8[]): a whole packet sequence, outputs written in place. */
static PyObject *Model_decide_many(ModelObject *m, PyObject *args) {
    Py_buffer b[8];
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*w*w*w*", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                          &b[6], &b[7]))
        return NULL;
    Py_ssize_t n = b[0].len / 8;
    int ok = b[1].len == n * 8 && b[2].len == n * 8 && b[3].len == n && b[4].len == n * 8 &&
             b[5].len == n * 8 && b[6].len == n * 8 && b[7].len == n;
    int failed = 0;
    if (ok) {
        const int64_t *t = b[0].buf, *size = b[1].buf, *flow = b[2].buf;
        uint8_t *fate = b[3].buf, *reordered = b[7].buf;
        int64_t *send = b[4].buf, *dup = b[5].buf, *bit = b[6].buf;
        Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < n; i++) {
            verdict_t v;
            if (decide(m, t[i], size[i], flow[i], &v) < 0) {
                failed = 1;
                break;
            }
            fate[i] = (uint8_t)v.fate;
            send[i] = v.send_at;
            dup[i] = v.dup_at;
            bit[i] = v.bit;
            reordered[i] = (uint8_t)v.reordered;
        }
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < 8; i++) PyBuffer_Release(&b[i]);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "decide_many: buffers of n int64 / n uint8 expected");
        return NULL;
    }
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Model_backlog(ModelObject *m, PyObject *args) {
    long long now;
    if (!PyArg_ParseTuple(args, "L", &now)) return NULL;
    long long count = 0;
    for (int64_t i = 0; i < m->p_count; i++) {
        int64_t t = m->heap_mode ? m->pending[i] : m->pending[(m->p_head + i) % m->p_cap];
        if (t > now) count++;
    }
    return PyLong_FromLongLong(count);
}

static PyMethodDef Model_methods[] = {
    {"decide", (PyCFunction)Model_decide, METH_VARARGS,
     "decide(now_ns, wire_size, flow=0) -> (fate, send_at_ns, duplicate_at_ns, corrupt_bit, "
     "reordered)"},
    {"decide_many", (PyCFunction)Model_decide_many, METH_VARARGS,
     "decide_many(t_in, size, flow, fate, send_at, duplicate_at, corrupt_bit, reordered)"},
    {"backlog", (PyCFunction)Model_backlog, METH_VARARGS,
     "backlog(now_ns) -> packets accepted but not yet departed"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lab.impairment._core.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One direction's netem-semantics decisions (DirectionModel in C).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Model_init,
    .tp_dealloc = (destructor)Model_dealloc,
    .tp_methods = Model_methods,
};

/* ------------------------------------------------------------ forwarding ----- */

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* model.flow_key */
static inline int64_t flow_key(const uint8_t *p, ssize_t n, int to_server) {
    if (n < 20 || (p[0] >> 4) != 4) return 0;
    int64_t proto = p[9];
    if (proto == 6 || proto == 17) {
        ssize_t ihl = (p[0] & 0x0F) * 4;
        int first = !((p[6] & 0x1F) || p[7]);
        if (first && n >= ihl + 4) {
            ssize_t at = to_server ? ihl + 2 : ihl;
            return proto << 16 | (int64_t)p[at] << 8 | p[at + 1];
        }
    }
    return proto << 16;
}

/* forwarder._corrupt: flip one bit of the transport payload (else the L4 header) */
static void corrupt_packet(uint8_t *p, ssize_t n, int64_t bit) {
    if (n < 20) return;
    ssize_t ihl = (p[0] & 0x0F) * 4;
    int proto = p[9];
    ssize_t l4 = 0;
    if (proto == 6)
        l4 = n > ihl + 12 ? (p[ihl + 12] >> 4) * 4 : 0;
    else if (proto == 17)
        l4 = 8;
    ssize_t start = ihl + l4;
    if (n <= start) start = ihl;
    if (n <= start) return;
    int64_t span_bits = (int64_t)(n - start) * 8;
    int64_t position = bit % span_bits;
    p[start + position / 8] ^= (uint8_t)(1u << (position % 8));
}

/* A held packet: its departure time, its order among equal times, its record row. */
typedef struct {
    int64_t t;
    int64_t seq;
    int64_t index; /* record row in the lane */
    uint8_t *data;
    int32_t len;
    int32_t is_copy;
} event_t;

/* The ground truth of one lane, in chunks that never move once allocated: the writer
 * thread fills in t_out of rows the reader thread appended earlier, while the reader
 * keeps appending (a realloc would pull the rows from under the writer). */
#define CHUNK_SHIFT 16
#define CHUNK_ROWS (1 << CHUNK_SHIFT)
#define MAX_CHUNKS 65536

typedef struct {
    int64_t t_in[CHUNK_ROWS], t_out[CHUNK_ROWS], scheduled[CHUNK_ROWS], dup_t_out[CHUNK_ROWS];
    int32_t size[CHUNK_ROWS];
    uint8_t fate[CHUNK_ROWS], flags[CHUNK_ROWS];
    uint8_t headers[(size_t)CHUNK_ROWS * HEADER_BYTES];
} chunk_t;

#define ROW(lane, i) ((lane)->chunks[(i) >> CHUNK_SHIFT])
#define OFF(i) ((i) & (CHUNK_ROWS - 1))

#define NO_STOP INT64_MAX

/* One direction of the link: a reader thread (read, decide, record) and a writer thread
 * (hold until the deadline, write). Each direction has its own timer heap and record, so
 * the two directions run on both cores without a lock between them, and per-direction
 * order is kept because one thread alone writes a direction's packets (the reader writes
 * directly only when its writer holds nothing of this direction). */
typedef struct {
    int read_fd, write_fd, to_server, code;
    ModelObject *model;
    int64_t spin_ns;
    int64_t spin_window_start, spun_ns; /* the writer's spin budget (writer-private) */
    int rt_priority;                    /* SCHED_FIFO priority of the writer, 0: none */
    int exit_fd; /* the engine's eventfd: 1 added when the lane's reading ends */
    /* the record (reader appends; writer sets t_out / dup_t_out / pending flags) */
    chunk_t **chunks;
    int64_t n_chunks;
    int64_t n; /* rows appended (read by Python only after the threads are joined) */
    int64_t sequence;
    /* reader -> writer hand-over, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    event_t *inbox;
    int64_t in_count, in_cap;
    int writer_waiting;  /* the writer sleeps on cv ... */
    int64_t writer_wake; /* ... until this time (NO_STOP: until signalled) */
    int64_t stop_at;     /* NO_STOP until Python asks the engine to stop */
    int done;            /* the writer has finished: nothing more is forwarded */
    int64_t held;        /* handed over and not yet written (atomic) */
    /* writer-private */
    event_t *heap;
    int64_t h_count, h_cap;
    /* Packet buffers go round: the reader takes one (spare), the writer writes it and
     * hands it back (sent, then spent under mu), the reader reuses it. The writer never
     * calls free(): that takes the lock of the reader's malloc arena, which the reader,
     * an ordinary thread, may hold while preempted, and the real-time writer would wait
     * behind it (priority inversion, seen as a 25 ms stall at 1000 pps). */
    event_t *sent; /* writer-private */
    int64_t n_sent, sent_cap;
    event_t *spent; /* under mu */
    int64_t n_spent, spent_cap;
    uint8_t **spare; /* reader-private */
    int64_t n_spare, spare_cap;
    /* counters (atomic) */
    int64_t write_errors;
    int failed;
    int stop_fd; /* eventfd: the writer has finished, the reader ends */
    pthread_t writer;
    int threads;
    uint8_t buf[MAX_PACKET];
} lane_t;

/* A reader thread and the lanes it reads: one per direction when packets are held (the
 * writers then work beside them), or one for both directions when no packet ever waits
 * (a clean or loss-only link: the reader writes every packet itself). Why not two
 * there too: TCP bulk through a clean link bounces between the directions (a data
 * segment's write makes the ACK, the ACK's write makes the next segments), and with
 * a thread per direction each bounce wakes the other thread on the other CPU: iperf3
 * bulk fell from 1.9-2.0 Gbit/s (one thread, as the single loop had it) to
 * 1.2-1.6 Gbit/s, with more engine CPU per Gbit. */
typedef struct {
    lane_t *lanes[2];
    int n;
    pthread_t thread;
} reader_t;

typedef struct {
    PyObject_HEAD
    lane_t *lanes[2];
    reader_t readers[2];
    int n_readers;
    int wake_fd, exit_fd;
    int64_t spin_ns;
    int started, joined, exited;
} EngineObject;

static inline int64_t lane_packets(lane_t *l) { return __atomic_load_n(&l->n, __ATOMIC_ACQUIRE); }

static int lane_new_row(lane_t *l, int64_t *row) {
    int64_t i = l->n;
    if (OFF(i) == 0 && (i >> CHUNK_SHIFT) == l->n_chunks) {
        if (l->n_chunks == MAX_CHUNKS) return -1;
        chunk_t *c = malloc(sizeof(chunk_t)); /* mmap-backed: pages appear as rows fill */
        if (!c) return -1;
        l->chunks[l->n_chunks++] = c;
    }
    *row = i;
    return 0;
}

static inline int ev_less(const event_t *a, const event_t *b) {
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int heap_push(lane_t *l, event_t ev) {
    if (l->h_count == l->h_cap) {
        int64_t cap = l->h_cap ? l->h_cap * 2 : 4096;
        event_t *p = realloc(l->heap, (size_t)cap * sizeof(event_t));
        if (!p) return -1;
        l->heap = p;
        l->h_cap = cap;
    }
    int64_t i = l->h_count++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!ev_less(&ev, &l->heap[parent])) break;
        l->heap[i] = l->heap[parent];
        i = parent;
    }
    l->heap[i] = ev;
    return 0;
}

static event_t heap_pop(lane_t *l) {
    event_t top = l->heap[0];
    int64_t n = --l->h_count;
    if (n > 0) {
        event_t v = l->heap[n];
        int64_t i = 0;
        for (;;) {
            int64_t c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && ev_less(&l->heap[c + 1], &l->heap[c])) c++;
            if (!ev_less(&l->heap[c], &v)) break;
            l->heap[i] = l->heap[c];
            i = c;
        }
        l->heap[i] = v;
    }
    return top;
}

static inline int64_t write_packet(lane_t *l, const uint8_t *p, ssize_t n) {
    if (write(l->write_fd, p, (size_t)n) < 0) __atomic_add_fetch(&l->write_errors, 1, __ATOMIC_RELAXED);
    return now_ns();
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Buffers of SMALL_BUFFER bytes (every packet up to the usual MTUs) are reused; larger
 * ones are freed by the reader when they come back. SPARE_MAX bounds what is kept. */
#define SMALL_BUFFER 2048
#define SPARE_MAX 65536

/* The writer keeps a written packet's buffer for the reader (writer_main passes them
 * on under mu). If even that list cannot grow, the buffer leaks rather than being
 * freed here (see lane_t). */
static void give_back(lane_t *l, event_t *ev) {
    if (l->n_sent == l->sent_cap) {
        int64_t cap = l->sent_cap ? l->sent_cap * 2 : 1024;
        event_t *p = realloc(l->sent, (size_t)cap * sizeof(event_t));
        if (!p) return;
        l->sent = p;
        l->sent_cap = cap;
    }
    l->sent[l->n_sent++] = *ev;
}

/* Under mu: the writer's written buffers become the reader's. */
static void pass_sent(lane_t *l) {
    if (l->n_sent == 0) return;
    if (l->n_spent == 0) { /* the usual case: swap the lists */
        event_t *t = l->spent;
        int64_t c = l->spent_cap;
        l->spent = l->sent;
        l->spent_cap = l->sent_cap;
        l->n_spent = l->n_sent;
        l->sent = t;
        l->sent_cap = c;
        l->n_sent = 0;
        return;
    }
    if (l->n_spent + l->n_sent > l->spent_cap) {
        int64_t cap = l->spent_cap * 2;
        while (cap < l->n_spent + l->n_sent) cap *= 2;
        event_t *p = realloc(l->spent, (size_t)cap * sizeof(event_t));
        if (!p) return; /* next time */
        l->spent = p;
        l->spent_cap = cap;
    }
    memcpy(l->spent + l->n_spent, l->sent, (size_t)l->n_sent * sizeof(event_t));
    l->n_spent += l->n_sent;
    l->n_sent = 0;
}

/* Under mu, in the reader: take the written buffers back. */
static void take_spent(lane_t *l) {
    for (int64_t i = 0; i < l->n_spent; i++) {
        event_t *ev = &l->spent[i];
        if (ev->len <= SMALL_BUFFER && l->n_spare < SPARE_MAX) {
            if (l->n_spare == l->spare_cap) {
                int64_t cap = l->spare_cap ? l->spare_cap * 2 : 1024;
                uint8_t **p = realloc(l->spare, (size_t)cap * sizeof(uint8_t *));
                if (!p) {
                    free(ev->data);
                    continue;
                }
                l->spare = p;
                l->spare_cap = cap;
            }
            l->spare[l->n_spare++] = ev->data;
        } else {
            free(ev->data);
        }
    }
    l->n_spent = 0;
}

/* Every held packet whose time has come, in (time, arrival) order. The clock is read
 * again after each write, so a burst that became due while writing goes out in the same
 * pass instead of waiting for another wake-up. */
static void send_due(lane_t *l) {
    int64_t now = now_ns();
    while (l->h_count && l->heap[0].t <= now) {
        event_t ev = heap_pop(l);
        now = write_packet(l, ev.data, ev.len);
        chunk_t *c = ROW(l, ev.index);
        if (ev.is_copy)
            c->dup_t_out[OFF(ev.index)] = now;
        else
            c->t_out[OFF(ev.index)] = now;
        give_back(l, &ev);
        __atomic_sub_fetch(&l->held, 1, __ATOMIC_RELEASE);
    }
}

static void mark_pending(lane_t *l, event_t *ev) {
    if (!ev->is_copy) ROW(l, ev->index)->flags[OFF(ev->index)] |= FLAG_PENDING_AT_STOP;
    free(ev->data);
    ev->data = NULL;
}

static void timespec_at(struct timespec *ts, int64_t t) {
    ts->tv_sec = (time_t)(t / 1000000000LL);
    ts->tv_nsec = (long)(t % 1000000000LL);
}

/* Spinning is capped at SPIN_BUDGET_NS per SPIN_WINDOW_NS (a tenth of a CPU): at a
 * steady rate with departures closer together than spin_ns the writer would otherwise
 * spin all the time, taking a core from the senders and receivers it serves (and, being
 * real-time, from every other sleeper: the lateness probe's p99 beside the engine at
 * 50k pps went from 0.4-0.6 ms to 1.0-1.8 ms with half a CPU of spinning). Past the
 * budget it sleeps to the exact deadline until the window ends. At 1000 pps the spin
 * fits in the budget; at 50k pps it runs out in most windows, and the engine's p99 was
 * the same with a tenth, a half or no spinning at all (0.12-0.21 ms, 3 runs each,
 * bench/impairment.py --only delay): the real-time wake-up does the work there. */
#define SPIN_WINDOW_NS 10000000LL
#define SPIN_BUDGET_NS 1000000LL
/* The writer runs SCHED_FIFO (rt_priority) while it keeps under RT_BUDGET_NS of work
 * (spinning and writing) per window, and as an ordinary thread for the rest of a window
 * in which it went over: a real-time writer never takes more than 60 % of a CPU. */
#define RT_BUDGET_NS 6000000LL

/* Why a real-time writer: on this shared 2-core VM the writer's wake-up waits behind
 * whatever else runs (the sender, the receiver, other people's tests), a millisecond
 * and more at times, and spinning makes that worse (a thread that spins has used its
 * fair share and is the first to be preempted). Measured with bench/impairment.py
 * --only delay under that load, 3 runs each: spin 50 us alone, engine p99 0.08-0.45 ms
 * at 1000 pps and 0.8-4.0 ms at 50k pps; spin 50 us + SCHED_FIFO 1, 0.020-0.026 ms and
 * 0.11-0.25 ms (the lateness probe, SCHED_OTHER, 0.06-4 ms meanwhile). */
static int writer_set_rt(lane_t *l, int on) {
    struct sched_param sp;
    memset(&sp, 0, sizeof sp);
    sp.sched_priority = on ? l->rt_priority : 0;
    if (pthread_setschedparam(pthread_self(), on ? SCHED_FIFO : SCHED_OTHER, &sp) == 0) return on;
    if (on) l->rt_priority = 0; /* not permitted here (no CAP_SYS_NICE): stay ordinary */
    return 0;
}

/* The writer: sleeps to (deadline - spin_ns) on a condition variable with an absolute
 * CLOCK_REALTIME timeout (a futex wait: the same hrtimer, with the same 1 ns slack, as
 * clock_nanosleep(TIMER_ABSTIME)), then spins to the deadline, then writes everything
 * due. Woken early only by a packet that must leave before what it waits for, or by
 * the stop. */
static void *writer_main(void *arg) {
    lane_t *l = arg;
    char name[16];
    snprintf(name, sizeof name, "lab-write-%d", l->code); /* for ps -L and top -H */
    pthread_setname_np(pthread_self(), name);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    int rt = l->rt_priority > 0 ? writer_set_rt(l, 1) : 0;
    int64_t busy_ns = 0;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        for (int64_t i = 0; i < l->in_count; i++)
            if (heap_push(l, l->inbox[i]) < 0) {
                __atomic_store_n(&l->failed, 1, __ATOMIC_RELEASE);
                mark_pending(l, &l->inbox[i]);
                __atomic_sub_fetch(&l->held, 1, __ATOMIC_RELEASE);
            }
        __atomic_store_n(&l->in_count, 0, __ATOMIC_RELEASE);
        int64_t now = now_ns();
        int64_t stop = l->stop_at;
        if (stop != NO_STOP && (l->h_count == 0 || now >= stop)) break;
        if (now - l->spin_window_start >= SPIN_WINDOW_NS) {
            l->spin_window_start = now;
            l->spun_ns = 0;
            busy_ns = 0;
            if (!rt && l->rt_priority > 0) rt = writer_set_rt(l, 1);
        }
        int64_t margin = l->spun_ns < SPIN_BUDGET_NS ? l->spin_ns : 0;
        int64_t wake = l->h_count ? l->heap[0].t - margin : NO_STOP;
        if (stop < wake) wake = stop;
        if (wake > now) {
            l->writer_waiting = 1;
            l->writer_wake = wake;
            if (wake == NO_STOP) {
                pthread_cond_wait(&l->cv, &l->mu);
            } else {
                struct timespec ts;
                timespec_at(&ts, wake);
                pthread_cond_timedwait(&l->cv, &l->mu, &ts);
            }
            l->writer_waiting = 0;
            continue;
        }
        pthread_mutex_unlock(&l->mu);
        /* within spin_ns of the deadline: spin, unless a new packet arrives meanwhile */
        int64_t due = l->heap[0].t, spun = now;
        while ((spun = now_ns()) < due && !__atomic_load_n(&l->in_count, __ATOMIC_ACQUIRE))
            cpu_relax();
        l->spun_ns += spun - now;
        send_due(l);
        busy_ns += now_ns() - now;
        if (rt && busy_ns > RT_BUDGET_NS) rt = writer_set_rt(l, 0);
        pthread_mutex_lock(&l->mu);
        pass_sent(l);
    }
    /* stopped: whatever is still held was never sent */
    while (l->h_count) {
        event_t ev = heap_pop(l);
        mark_pending(l, &ev);
    }
    __atomic_store_n(&l->held, 0, __ATOMIC_RELEASE);
    l->done = 1;
    pthread_mutex_unlock(&l->mu);
    uint64_t one = 1;
    if (write(l->stop_fd, &one, sizeof one) < 0) {
        /* an eventfd write cannot fail short of overflow; the reader also polls done */
    }
    return NULL;
}

/* Hand the batch's held packets to the writer; wake it only if one of them must leave
 * before the time the writer sleeps until (with a 20 ms delay, none: no extra wake-up). */
static void hand_over(lane_t *l, event_t *out, int n_out) {
    if (n_out == 0) return;
    pthread_mutex_lock(&l->mu);
    take_spent(l);
    if (l->done) { /* stopped meanwhile: these are never sent */
        for (int k = 0; k < n_out; k++) mark_pending(l, &out[k]);
        pthread_mutex_unlock(&l->mu);
        return;
    }
    if (l->in_count + n_out > l->in_cap) {
        int64_t cap = l->in_cap ? l->in_cap * 2 : 1024;
        while (cap < l->in_count + n_out) cap *= 2;
        event_t *p = realloc(l->inbox, (size_t)cap * sizeof(event_t));
        if (!p) {
            __atomic_store_n(&l->failed, 1, __ATOMIC_RELEASE);
            for (int k = 0; k < n_out; k++) mark_pending(l, &out[k]);
            pthread_mutex_unlock(&l->mu);
            return;
        }
        l->inbox = p;
        l->in_cap = cap;
    }
    int64_t earliest = NO_STOP;
    for (int k = 0; k < n_out; k++) {
        l->inbox[l->in_count + k] = out[k];
        if (out[k].t - l->spin_ns < earliest) earliest = out[k].t - l->spin_ns;
    }
    __atomic_add_fetch(&l->held, n_out, __ATOMIC_RELEASE);
    __atomic_store_n(&l->in_count, l->in_count + n_out, __ATOMIC_RELEASE);
    if (l->writer_waiting && earliest < l->writer_wake) pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static int make_event(lane_t *l, event_t *ev, int64_t t, const uint8_t *p, ssize_t n,
                      int64_t index, int is_copy) {
    if (n <= SMALL_BUFFER)
        ev->data = l->n_spare ? l->spare[--l->n_spare] : malloc(SMALL_BUFFER);
    else
        ev->data = malloc((size_t)n);
    if (!ev->data) return -1;
    memcpy(ev->data, p, (size_t)n);
    ev->t = t;
    ev->seq = ++l->sequence;
    ev->index = index;
    ev->len = (int32_t)n;
    ev->is_copy = is_copy;
    return 0;
}

/* Forwarder._read_batch for one lane. Returns -1 on allocation failure. */
static int read_batch(lane_t *l) {
    ModelObject *m = l->model;
    uint8_t *p = l->buf;
    event_t out[2 * READ_BATCH];
    int n_out = 0, status = 0;
    for (int b = 0; b < READ_BATCH; b++) {
        ssize_t n = read(l->read_fd, p, MAX_PACKET);
        if (n < 0) break; /* EAGAIN (or a vanished device): look again later */
        int64_t t_in = now_ns();
        int64_t key = m->clean ? 0 : flow_key(p, n, l->to_server);
        verdict_t v;
        int64_t i;
        if (decide(m, t_in, n, key, &v) < 0 || lane_new_row(l, &i) < 0) {
            status = -1;
            break;
        }
        chunk_t *c = ROW(l, i);
        int64_t o = OFF(i);
        c->t_in[o] = t_in;
        c->size[o] = (int32_t)n;
        c->fate[o] = (uint8_t)v.fate;
        uint8_t *h = c->headers + o * HEADER_BYTES;
        ssize_t keep = n < HEADER_BYTES ? n : HEADER_BYTES;
        memcpy(h, p, (size_t)keep);
        memset(h + keep, 0, (size_t)(HEADER_BYTES - keep));
        c->scheduled[o] = v.send_at;
        c->dup_t_out[o] = -1;
        c->t_out[o] = -1;
        uint8_t flags = v.reordered ? FLAG_REORDERED : 0;
        if (!v.fate) {
            if (v.bit >= 0) {
                corrupt_packet(p, n, v.bit);
                flags |= FLAG_CORRUPTED;
            }
            if (v.dup_at >= 0) flags |= FLAG_DUPLICATED;
        }
        c->flags[o] = flags;
        __atomic_store_n(&l->n, i + 1, __ATOMIC_RELEASE);
        if (v.fate) continue;
        if (v.send_at <= t_in && n_out == 0 && __atomic_load_n(&l->held, __ATOMIC_ACQUIRE) == 0) {
            c->t_out[o] = write_packet(l, p, n); /* nothing of this direction waits: no hop */
        } else if (make_event(l, &out[n_out], v.send_at, p, n, i, 0) < 0) {
            status = -1;
            break;
        } else {
            n_out++;
        }
        if (v.dup_at >= 0) {
            if (make_event(l, &out[n_out], v.dup_at, p, n, i, 1) < 0) {
                status = -1;
                break;
            }
            n_out++;
        }
    }
    hand_over(l, out, n_out);
    return status;
}


static void lane_finished(lane_t *l) {
    uint64_t one = 1;
    if (write(l->exit_fd, &one, sizeof one) < 0) {
        /* the engine thread also checks the failed flags */
    }
}

/* The reader stays an ordinary thread. A SCHED_FIFO reader (the writer's budget, one
 * priority below it) was measured against this one, 3 alternating runs of sockperf into
 * a clean link (2026-12-02): with two spinning senders sharing 300k-400k pps it lost
 * 0-11 % instead of 9-39 %, but with the one sender of the forwarding benchmark at
 * 400k pps of 100 B it lost 3.7-16 % instead of 0-0.9 %: it preempts the sender it
 * serves. */
static void *reader_main(void *arg) {
    reader_t *r = arg;
    char name[16];
    if (r->n == 1)
        snprintf(name, sizeof name, "lab-read-%d", r->lanes[0]->code);
    else
        snprintf(name, sizeof name, "lab-read");
    pthread_setname_np(pthread_self(), name);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    struct pollfd fds[4];
    int finished[2] = {0, 0}, open = r->n;
    for (int k = 0; k < r->n; k++) {
        fds[2 * k] = (struct pollfd){r->lanes[k]->read_fd, POLLIN, 0};
        fds[2 * k + 1] = (struct pollfd){r->lanes[k]->stop_fd, POLLIN, 0};
    }
    while (open > 0) {
        if (poll(fds, (nfds_t)(2 * r->n), -1) < 0) continue;
        for (int k = 0; k < r->n; k++) {
            lane_t *l = r->lanes[k];
            if (finished[k]) continue;
            if ((fds[2 * k + 1].revents & POLLIN) || __atomic_load_n(&l->done, __ATOMIC_ACQUIRE)) {
                finished[k] = 1;
                open--;
                fds[2 * k].fd = fds[2 * k + 1].fd = -1;
                lane_finished(l);
                continue;
            }
            short got = fds[2 * k].revents;
            if ((got & (POLLIN | POLLERR | POLLHUP)) && read_batch(l) < 0) {
                __atomic_store_n(&l->failed, 1, __ATOMIC_RELEASE);
                for (int j = 0; j < r->n; j++)
                    if (!finished[j]) {
                        finished[j] = 1;
                        lane_finished(r->lanes[j]);
                    }
                open = 0;
                break;
            }
            /* the device is gone: nothing will be read any more; wait for the stop */
            if (got & (POLLERR | POLLHUP | POLLNVAL)) fds[2 * k].fd = -1;
        }
    }
    return NULL;
}

static void lane_request_stop(lane_t *l, int64_t stop_at) {
    pthread_mutex_lock(&l->mu);
    if (stop_at < l->stop_at) l->stop_at = stop_at;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void lane_free(lane_t *l) {
    if (!l) return;
    while (l->h_count) {
        event_t ev = heap_pop(l);
        free(ev.data);
    }
    for (int64_t i = 0; i < l->in_count; i++) free(l->inbox[i].data);
    for (int64_t i = 0; i < l->n_sent; i++) free(l->sent[i].data);
    for (int64_t i = 0; i < l->n_spent; i++) free(l->spent[i].data);
    for (int64_t i = 0; i < l->n_spare; i++) free(l->spare[i]);
    free(l->heap);
    free(l->inbox);
    free(l->sent);
    free(l->spent);
    free(l->spare);
    for (int64_t i = 0; i < l->n_chunks; i++) free(l->chunks[i]);
    free(l->chunks);
    if (l->stop_fd >= 0) close(l->stop_fd);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    Py_XDECREF(l->model);
    free(l);
}

static lane_t *lane_new(void) {
    lane_t *l = calloc(1, sizeof(lane_t));
    if (!l) return NULL;
    l->stop_fd = -1;
    /* priority inheritance: a real-time writer waiting for mu lends its priority to the
     * ordinary reader holding it, so a preempted reader cannot stall the writer */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&l->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_cond_init(&l->cv, NULL);
    l->stop_at = NO_STOP;
    l->writer_wake = NO_STOP;
    l->chunks = calloc(MAX_CHUNKS, sizeof(chunk_t *));
    l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!l->chunks || l->stop_fd < 0) {
        lane_free(l);
        return NULL;
    }
    return l;
}

/* Ask every lane to stop at stop_at (0: now) and join the threads. */
static void engine_join(EngineObject *e, int64_t stop_at) {
    if (!e->started || e->joined) return;
    for (int i = 0; i < 2; i++) lane_request_stop(e->lanes[i], stop_at);
    for (int i = 0; i < 2; i++) pthread_join(e->lanes[i]->writer, NULL);
    for (int i = 0; i < e->n_readers; i++) pthread_join(e->readers[i].thread, NULL);
    e->joined = 1;
}

static int lane_shares_reader(lane_t *l) { return l->model->clean || l->model->loss_only; }

static int engine_start(EngineObject *e) {
    sigset_t all, old;
    sigfillset(&all);
    /* the lanes take no signal: Python's handlers run in the main thread, which the
     * signal wakes through the wake fd */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int writers = 0, readers = 0, rc = 0;
    for (; writers < 2 && rc == 0; writers++)
        if ((rc = pthread_create(&e->lanes[writers]->writer, NULL, writer_main, e->lanes[writers])))
            break;
    if (lane_shares_reader(e->lanes[0]) && lane_shares_reader(e->lanes[1])) {
        e->readers[0] = (reader_t){{e->lanes[0], e->lanes[1]}, 2, 0};
        e->n_readers = 1;
    } else {
        e->readers[0] = (reader_t){{e->lanes[0], NULL}, 1, 0};
        e->readers[1] = (reader_t){{e->lanes[1], NULL}, 1, 0};
        e->n_readers = 2;
    }
    for (; rc == 0 && readers < e->n_readers; readers++)
        if ((rc = pthread_create(&e->readers[readers].thread, NULL, reader_main, &e->readers[readers])))
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) { /* stop what started: the writers end at once, then their readers */
        for (int i = 0; i < 2; i++) lane_request_stop(e->lanes[i], 0);
        for (int i = 0; i < writers; i++) pthread_join(e->lanes[i]->writer, NULL);
        for (int i = 0; i < readers; i++) pthread_join(e->readers[i].thread, NULL);
        return -1;
    }
    e->started = 1;
    return 0;
}

static void Engine_dealloc(EngineObject *e) {
    engine_join(e, 0);
    for (int i = 0; i < 2; i++) lane_free(e->lanes[i]);
    if (e->exit_fd > 0) close(e->exit_fd);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

/* Engine(routes, wake_fd, spin_ns=0, rt_priority=0): routes = ((read_fd, write_fd, model,
 * to_server), x2), index = the direction's code in the record; rt_priority: the writers'
 * SCHED_FIFO priority (0: ordinary threads). */
static int Engine_init(EngineObject *e, PyObject *args, PyObject *kwds UNUSED) {
    PyObject *routes;
    int wake_fd;
    long long spin_ns = 0;
    int rt_priority = 0;
    if (e->started) {
        PyErr_SetString(PyExc_RuntimeError, "the engine is already running");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "O!i|Li", &PyTuple_Type, &routes, &wake_fd, &spin_ns,
                          &rt_priority))
        return -1;
    if (rt_priority < 0 || rt_priority > 99) {
        PyErr_SetString(PyExc_ValueError, "rt_priority must be in [0, 99]");
        return -1;
    }
    if (PyTuple_GET_SIZE(routes) != 2) {
        PyErr_SetString(PyExc_ValueError, "two routes expected");
        return -1;
    }
    if (spin_ns < 0 || spin_ns > 1000000000LL) {
        PyErr_SetString(PyExc_ValueError, "spin_ns must be in [0, 1 s]");
        return -1;
    }
    if (e->exit_fd <= 0) {
        e->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (e->exit_fd < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    for (int i = 0; i < 2; i++) {
        PyObject *model;
        int read_fd, write_fd, to_server;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(routes, i), "iiO!p", &read_fd, &write_fd,
                              &ModelType, &model, &to_server))
            return -1;
        lane_free(e->lanes[i]);
        lane_t *l = e->lanes[i] = lane_new();
        if (!l) {
            PyErr_NoMemory();
            return -1;
        }
        Py_INCREF(model);
        l->model = (ModelObject *)model;
        l->read_fd = read_fd;
        l->write_fd = write_fd;
        l->to_server = to_server;
        l->code = i;
        l->spin_ns = spin_ns;
        l->rt_priority = rt_priority;
        l->exit_fd = e->exit_fd;
    }
    e->wake_fd = wake_fd;
    e->spin_ns = spin_ns;
    /* sleep to deadlines with hrtimer precision, not the default 50 us slack (the
     * threads inherit it, and set it again themselves) */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    return 0;
}

/* run(stop_at_ns) -> True when stopped (nothing held or grace over), False when the
 * wake fd fired (a signal: Python's handlers have run when this returns). The lanes
 * forward in their own threads, started by the first call, whatever Python does. */
static PyObject *Engine_run(EngineObject *e, PyObject *args) {
    long long stop_at;
    if (!PyArg_ParseTuple(args, "L", &stop_at)) return NULL;
    if (!e->lanes[0] || !e->lanes[1]) {
        PyErr_SetString(PyExc_RuntimeError, "the engine is not initialised");
        return NULL;
    }
    if (e->joined) Py_RETURN_TRUE;
    int done = 0, failed = 0, start_failed = 0;
    Py_BEGIN_ALLOW_THREADS;
    if (!e->started && engine_start(e) < 0) start_failed = 1;
    if (!start_failed) {
        if (stop_at >= 0)
            for (int i = 0; i < 2; i++) lane_request_stop(e->lanes[i], stop_at);
        struct pollfd fds[2] = {{e->wake_fd, POLLIN, 0}, {e->exit_fd, POLLIN, 0}};
        for (;;) {
            for (int i = 0; i < 2; i++) failed |= __atomic_load_n(&e->lanes[i]->failed, __ATOMIC_ACQUIRE);
            if (failed || e->exited == 2) break;
            if (poll(fds, 2, -1) < 0) break; /* EINTR: a signal, handled below */
            if (fds[1].revents & POLLIN) {
                uint64_t count;
                if (read(e->exit_fd, &count, sizeof count) == sizeof count) e->exited += (int)count;
                continue;
            }
            if (fds[0].revents & POLLIN) {
                uint8_t drain[512];
                while (read(e->wake_fd, drain, sizeof drain) > 0) {
                }
                break;
            }
        }
        if (failed || e->exited == 2) {
            engine_join(e, failed ? 0 : stop_at);
            done = 1;
        }
    }
    Py_END_ALLOW_THREADS;
    if (start_failed) {
        PyErr_SetString(PyExc_OSError, "could not start the engine's threads");
        return NULL;
    }
    if (failed) return PyErr_NoMemory();
    if (!done && PyErr_CheckSignals() < 0) return NULL;
    return PyBool_FromLong(done);
}

/* The two lanes' rows merged by t_in (each lane's rows are already in t_in order), so
 * the record reads as the single-threaded loop's did: packets in the order they came. */
static PyObject *Engine_record(EngineObject *e, PyObject *noargs UNUSED) {
    if (e->started && !e->joined) {
        PyErr_SetString(PyExc_RuntimeError, "record() while the engine runs");
        return NULL;
    }
    lane_t *a = e->lanes[0], *b = e->lanes[1];
    int64_t na = a ? a->n : 0, nb = b ? b->n : 0, n = na + nb;
    PyObject *cols[9];
    static const char *names[9] = {"direction", "t_in_ns", "t_out_ns", "scheduled_ns",
                                   "dup_t_out_ns", "size", "fate", "flags", "headers"};
    static const Py_ssize_t width[9] = {1, 8, 8, 8, 8, 4, 1, 1, HEADER_BYTES};
    for (int k = 0; k < 9; k++) {
        cols[k] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n * width[k]);
        if (!cols[k]) {
            for (int j = 0; j < k; j++) Py_DECREF(cols[j]);
            return NULL;
        }
    }
    uint8_t *direction = (uint8_t *)PyBytes_AS_STRING(cols[0]);
    int64_t *t_in = (int64_t *)PyBytes_AS_STRING(cols[1]);
    int64_t *t_out = (int64_t *)PyBytes_AS_STRING(cols[2]);
    int64_t *scheduled = (int64_t *)PyBytes_AS_STRING(cols[3]);
    int64_t *dup_t_out = (int64_t *)PyBytes_AS_STRING(cols[4]);
    int32_t *size = (int32_t *)PyBytes_AS_STRING(cols[5]);
    uint8_t *fate = (uint8_t *)PyBytes_AS_STRING(cols[6]);
    uint8_t *flags = (uint8_t *)PyBytes_AS_STRING(cols[7]);
    uint8_t *headers = (uint8_t *)PyBytes_AS_STRING(cols[8]);
    int64_t ia = 0, ib = 0;
    for (int64_t r = 0; r < n; r++) {
        lane_t *l;
        int64_t i;
        if (ib >= nb || (ia < na && ROW(a, ia)->t_in[OFF(ia)] <= ROW(b, ib)->t_in[OFF(ib)])) {
            l = a;
            i = ia++;
        } else {
            l = b;
            i = ib++;
        }
        chunk_t *c = ROW(l, i);
        int64_t o = OFF(i);
        direction[r] = (uint8_t)l->code;
        t_in[r] = c->t_in[o];
        t_out[r] = c->t_out[o];
        scheduled[r] = c->scheduled[o];
        dup_t_out[r] = c->dup_t_out[o];
        size[r] = c->size[o];
        fate[r] = c->fate[o];
        flags[r] = c->flags[o];
        memcpy(headers + r * HEADER_BYTES, c->headers + o * HEADER_BYTES, HEADER_BYTES);
    }
    PyObject *d = PyDict_New();
    for (int k = 0; k < 9; k++) {
        if (d && PyDict_SetItemString(d, names[k], cols[k]) < 0) Py_CLEAR(d);
        Py_DECREF(cols[k]);
    }
    return d;
}

static PyObject *Engine_get_write_errors(EngineObject *e, void *closure UNUSED) {
    long long count = 0;
    for (int i = 0; i < 2; i++)
        if (e->lanes[i]) count += __atomic_load_n(&e->lanes[i]->write_errors, __ATOMIC_RELAXED);
    return PyLong_FromLongLong(count);
}

static PyObject *Engine_get_packets(EngineObject *e, void *closure UNUSED) {
    long long count = 0;
    for (int i = 0; i < 2; i++)
        if (e->lanes[i]) count += lane_packets(e->lanes[i]);
    return PyLong_FromLongLong(count);
}

static PyMethodDef Engine_methods[] = {
    {"run", (PyCFunction)Engine_run, METH_VARARGS,
     "run(stop_at_ns) -> True when stopped, False when woken by a signal (-1: no stop yet)"},
    {"record", (PyCFunction)Engine_record, METH_NOARGS,
     "The ground-truth columns as bytes (native-endian arrays), once stopped."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Engine_getset[] = {
    {"write_errors", (getter)Engine_get_write_errors, NULL, "failed TUN writes", NULL},
    {"packets", (getter)Engine_get_packets, NULL, "packets recorded so far", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lab.impairment._core.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The TUN-to-TUN forwarding loop in C (Forwarder in forwarder.py), "
              "a reader and a writer thread per direction.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

/* ------------------------------------------------------------ test hooks ----- */

/* seed_state(seed_words, spawn_key) -> (state, inc): checks seeding against numpy */
static PyObject *core_seed_state(PyObject *self UNUSED, PyObject *args) {
    PyObject *words, *spawn;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &words, &PyTuple_Type, &spawn))
        return NULL;
    uint32_t w[24], s[8];
    int nw = (int)PyTuple_GET_SIZE(words), ns = (int)PyTuple_GET_SIZE(spawn);
    if (nw < 1 || nw > 24 || ns > 8) {
        PyErr_SetString(PyExc_ValueError, "1-24 seed words, at most 8 key words");
        return NULL;
    }
    for (int i = 0; i < nw; i++) w[i] = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(words, i));
    for (int i = 0; i < ns; i++) s[i] = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(spawn, i));
    if (PyErr_Occurred()) return NULL;
    pcg64_t g;
    seed_pcg(&g, w, nw, s, ns);
    char hex[2][40];
    snprintf(hex[0], sizeof hex[0], "%016llx%016llx", (unsigned long long)(g.state >> 64),
             (unsigned long long)g.state);
    snprintf(hex[1], sizeof hex[1], "%016llx%016llx", (unsigned long long)(g.inc >> 64),
             (unsigned long long)g.inc);
    PyObject *a = PyLong_FromString(hex[0], NULL, 16), *b = PyLong_FromString(hex[1], NULL, 16);
    if (!a || !b) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    return Py_BuildValue("(NN)", a, b);
}

static PyMethodDef core_methods[] = {
    {"seed_state", core_seed_state, METH_VARARGS,
     "seed_state(seed_words, spawn_key) -> (state, inc) of the PCG64 numpy would seed"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_core",
    .m_doc = "Compiled impairment core (see _core.c).",
    .m_size = -1,
    .m_methods = core_methods,
};

PyMODINIT_FUNC PyInit__core(void) {
    if (PyType_Ready(&ModelType) < 0 || PyType_Ready(&EngineType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&core_module);
    if (!mod) return NULL;
    Py_INCREF(&ModelType);
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(mod, "Model", (PyObject *)&ModelType) < 0 ||
        PyModule_AddObject(mod, "Engine", (PyObject *)&EngineType) < 0 ||
        PyModule_AddIntConstant(mod, "BLOCK_SIZE", BLOCK_SIZE) < 0 ||
        PyModule_AddIntConstant(mod, "HEADER_BYTES", HEADER_BYTES) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
